"""Run the function with nothing but `src/` and the dependency layer on the path, as on SCF.

    python -I -S -B layer_driver.py CONFIG.json

Started by tests/bench/layer.py with SCF's Python when the machine has it. `-S` keeps
site-packages out, so every third-party module must come from the layer. For each case it
invokes `index.main_handler` on the upload's event, delivers the same event again, and reads
the object back to check the labels landed. Standard library only, besides src/ and the layer.
"""

import json
import os
import sys
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH-RESULT "


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    here = Path(__file__).resolve().parent
    # Python 3.10 puts the script's folder first even under -I: only src, the layer and the stdlib.
    sys.path[:] = [config["src"], config["layer"]] + [p for p in sys.path if p and Path(p).resolve() != here]
    result: dict[str, Any] = {"python": sys.version.split()[0], "problems": [], "cases": 0}
    try:
        run(config, result)
    except BaseException as error:  # the parent reports it; a missing module is the expected failure
        result["problems"].append(f"{type(error).__name__}: {error}")
    print(RESULT_PREFIX + json.dumps(result))


def run(config: dict[str, Any], result: dict[str, Any]) -> None:
    from qcloud_cos import CosConfig, CosS3Client

    import index

    client = CosS3Client(
        CosConfig(
            Region=config["region"],
            SecretId=config["secret_id"],
            SecretKey=config["secret_key"],
            Scheme="http",
            IP="127.0.0.1",
            Port=config["port"],
        ),
        retry=0,
    )
    for n, case in enumerate(config["cases"]):
        context = {"request_id": f"layer-{n}", "function_name": "cos-autotag", "time_limit_in_ms": 30000}
        first = index.main_handler(case["event"], context)
        again = index.main_handler(case["event"], context)
        if first.get("labeled") != 1 or again.get("duplicates") != 1:
            result["problems"].append(f"{case['key']}: first {first.get('results')}, again {again.get('results')}")
            continue
        if config["mode"] == "tags":
            tags = client.get_object_tagging(Bucket=config["bucket"], Key=case["key"]).get("TagSet") or {}
            written = "autotag" in json.dumps(tags)
        else:
            head = client.head_object(Bucket=config["bucket"], Key=case["key"])
            written = any(k.lower() == "x-cos-meta-autotag" for k in head)
        if not written:
            result["problems"].append(f"{case['key']}: no labels on the object")
        result["cases"] += 1
    # Not resolved: the parent may hand a view of the layer made of symlinks.
    roots = (os.path.abspath(config["src"]) + os.sep, os.path.abspath(config["layer"]) + os.sep)
    stdlib = os.path.dirname(os.path.dirname(os.path.abspath(json.__file__))) + os.sep
    files = {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}
    result["modules_outside"] = sorted(
        name
        for name, file in files.items()
        if name != "__main__" and file and not os.path.abspath(file).startswith((*roots, stdlib))
    )
    if result["modules_outside"]:
        result["problems"].append(f"modules loaded from outside src/ and the layer: {result['modules_outside']}")


if __name__ == "__main__":
    main()
