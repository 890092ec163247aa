"""Deploy tooling: the offline checks of serverless.yml and the upload (`components`,
`imports`), the execution role's policy (`cam`, `cos-autotag policy`), the settings' generated
docs (`settings_doc`) and the preflight (`cos-autotag check`). Never deployed."""
