"""The query language of `find` and `gallery`: one parser, one evaluator.

    猫                     a label containing 猫 (虎纹猫, 埃及猫, ...), case- and width-folded
    ="虎纹猫"               a label that is exactly 虎纹猫 (quotes for spaces, parentheses, `=`...)
    猫>=60                 ... with confidence 60 or more (also >, <, <=, =)
    猫 AND NOT 狗           AND, OR, NOT and parentheses; juxtaposition is AND
    (猫 OR 狗) 猫>=90
    key:photos/2024/       keys starting with photos/2024/

AND, OR and NOT are operators only in capitals (`and` is a word). Where the offline label
engine knows a label in both languages (ImageNet classes and categories), either name matches:
`cat` finds 虎斑猫 (`tabby cat`), `="tiger cat"` finds 虎纹猫.

`parse` gives a tree whose `str()` parses back to the same tree; `matches` evaluates it over one
object's key and labels. The CLI, the gallery's server (which the page sends its query to) and
the index all call these two; `dataset.py` translates the same tree for MetaInsight.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .object_labels import label_key

OPERATORS = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
             "<": lambda a, b: a < b, "=": lambda a, b: a == b}  # fmt: skip
KEYWORDS = ("AND", "OR", "NOT")
MAX_LENGTH = 2000
MAX_DEPTH = 50
HELP = (
    'words match labels by substring (猫), ="exact label", 猫>=60, key:PREFIX, '
    'AND, OR, NOT and parentheses; quote a label holding spaces or ()<>="'
)


class QueryError(ValueError):
    """A query that does not parse; the message says where and what to write instead."""


@dataclass(frozen=True)
class Label:
    text: str
    exact: bool = False
    op: str | None = None
    bound: int | None = None

    def __str__(self) -> str:
        out = ("=" if self.exact else "") + _quote(self.text)
        return out + (f"{self.op}{self.bound}" if self.op is not None else "")


@dataclass(frozen=True)
class KeyPrefix:
    prefix: str

    def __str__(self) -> str:
        return "key:" + _quote(self.prefix)


@dataclass(frozen=True)
class Not:
    item: Node

    def __str__(self) -> str:
        return f"NOT {_grouped(self.item)}"


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " AND ".join(_grouped(item) for item in self.items)


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " OR ".join(_grouped(item) for item in self.items)


Node = Label | KeyPrefix | Not | And | Or


@dataclass(frozen=True)
class Everything:
    """The empty query."""

    def __str__(self) -> str:
        return ""


Query = Node | Everything


def _grouped(node: Node) -> str:
    return f"({node})" if isinstance(node, (And, Or)) else str(node)


_BARE = re.compile(r'[^\s()"<>=]+')


def _quote(text: str) -> str:
    if _BARE.fullmatch(text) and text not in KEYWORDS and not text.startswith("key:"):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- tokens -----------------------------------------------------------------------------------

_TOKEN = re.compile(r'\s*(?:(?P<paren>[()])|(?P<cmp>>=|<=|>|<|=)|"(?P<string>(?:[^"\\]|\\.)*)"|(?P<word>[^\s()"<>=]+))')


@dataclass(frozen=True)
class _Token:
    kind: str  # paren, cmp, string, word, end
    text: str
    at: int


def _tokens(query: str) -> list[_Token]:
    out, at = [], 0
    while True:
        while at < len(query) and query[at].isspace():
            at += 1
        if at >= len(query):
            out.append(_Token("end", "", at))
            return out
        match = _TOKEN.match(query, at)
        if match is None or match.lastgroup is None:
            if query[at] == '"':
                raise QueryError(f'unclosed quote at character {at + 1}: end the label with "')
            raise QueryError(f"cannot read {query[at : at + 10]!r} at character {at + 1}: {HELP}")
        kind = match.lastgroup
        text = match.group(kind)
        if kind == "string":
            text = re.sub(r"\\(.)", r"\1", text)
        out.append(_Token(kind, text, at))
        at = match.end()


# --- parser -----------------------------------------------------------------------------------


class _Parser:
    def __init__(self, query: str) -> None:
        self.tokens = _tokens(query)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.text == word

    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while self.keyword("OR"):
            self.take()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> Node:
        items = [self.parse_unary()]
        while True:
            token = self.peek()
            if self.keyword("AND"):
                self.take()
            elif token.kind == "end" or (token.kind == "paren" and token.text == ")") or self.keyword("OR"):
                break
            items.append(self.parse_unary())
        flat: list[Node] = []
        for item in items:
            flat.extend(item.items if isinstance(item, And) else (item,))
        return flat[0] if len(flat) == 1 else And(tuple(flat))

    def parse_unary(self) -> Node:
        if self.keyword("NOT"):
            self.take()
            return Not(self.parse_unary())
        return self.parse_primary()

    def parse_primary(self) -> Node:
        token = self.take()
        if token.kind == "paren" and token.text == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise QueryError(f"more than {MAX_DEPTH} nested parentheses: write the query flatter")
            node = self.parse_or()
            close = self.take()
            if close.kind != "paren" or close.text != ")":
                raise QueryError(f"missing ) for the ( at character {token.at + 1}")
            self.depth -= 1
            return node
        if token.kind == "end":
            raise QueryError("the query ends where a label was expected: add one, or drop the trailing operator")
        if token.kind == "paren":
            raise QueryError(f"unexpected ) at character {token.at + 1}: remove it or add the matching (")
        if token.kind == "word" and token.text in KEYWORDS:
            raise QueryError(
                f"{token.text} at character {token.at + 1} needs a label before and after it; "
                f'to search for the word itself, quote it: "{token.text}"'
            )
        if token.kind == "word" and token.text.startswith("key:"):
            prefix = token.text[len("key:") :]
            if not prefix and self.peek().kind == "string" and self.peek().at == token.at + len(token.text):
                prefix = self.take().text
            return KeyPrefix(prefix)
        exact = False
        if token.kind == "cmp":
            if token.text != "=":
                raise QueryError(f"{token.text} at character {token.at + 1} needs a label before it, e.g. 猫>=60")
            exact = True
            token = self.take()
            if token.kind not in ("word", "string"):
                raise QueryError(f'= at character {token.at} needs a label after it, e.g. ="虎纹猫"')
        text = token.text
        if not label_key(text):
            raise QueryError(f"empty label at character {token.at + 1}: give a label, e.g. 猫")
        op = bound = None
        if self.peek().kind == "cmp":
            op = self.take().text
            number = self.take()
            if number.kind != "word" or not re.fullmatch(r"[0-9]{1,3}", number.text) or int(number.text) > 100:
                raise QueryError(f"{text}{op} needs a confidence 0 to 100 after it, e.g. {text}{op}60")
            bound = int(number.text)
        return Label(text, exact, op, bound)


def parse(query: str) -> Query:
    """The query's tree (`Everything` for an empty query). Raises QueryError with what to do."""
    if len(query) > MAX_LENGTH:
        raise QueryError(f"the query is {len(query)} characters long; at most {MAX_LENGTH}")
    parser = _Parser(query)
    if parser.peek().kind == "end":
        return Everything()
    node = parser.parse_or()
    token = parser.peek()
    if token.kind == "paren":
        raise QueryError(f"unexpected ) at character {token.at + 1}: remove it or add the matching (")
    if token.kind != "end":
        raise QueryError(f"unexpected {token.text!r} at character {token.at + 1}: {HELP}")
    return node


# --- evaluator --------------------------------------------------------------------------------


@functools.cache
def _bilingual() -> dict[str, frozenset[str]]:
    """Folded label name -> its folded names in either language, from the offline engine's tables."""
    from .labels.classes import chinese_category_names, chinese_class_names, class_names

    pairs = list(zip(class_names(), chinese_class_names(), strict=True)) + list(chinese_category_names().items())
    table: dict[str, set[str]] = {}
    for english, chinese in pairs:
        names = {label_key(english), label_key(chinese)}
        for name in names:
            table.setdefault(name, set()).update(names)
    return {name: frozenset(names) for name, names in table.items()}


def names_of(label: str) -> frozenset[str]:
    """The folded names a label answers to: its own, and its other language's where known."""
    folded = label_key(label)
    return _bilingual().get(folded, frozenset((folded,)))


def _label_matches(term: Label, labels: Sequence[tuple[str, int]]) -> bool:
    wanted = label_key(term.text)
    for name, confidence in labels:
        names = names_of(name)
        found = wanted in names if term.exact else any(wanted in n for n in names)
        if found and (term.op is None or OPERATORS[term.op](confidence, term.bound)):
            return True
    return False


def matches(query: Query, key: str, labels: Sequence[tuple[str, int]]) -> bool:
    """Whether an object (its key and its labels, as `object_labels.decode_labels` reads them) matches."""
    if isinstance(query, Everything):
        return True
    if isinstance(query, Label):
        return _label_matches(query, labels)
    if isinstance(query, KeyPrefix):
        return key.startswith(query.prefix)
    if isinstance(query, Not):
        return not matches(query.item, key, labels)
    if isinstance(query, And):
        return all(matches(item, key, labels) for item in query.items)
    return any(matches(item, key, labels) for item in query.items)


def best_confidence(query: Query, labels: Sequence[tuple[str, int]]) -> int | None:
    """The highest confidence among the labels the query's positive terms name (what `find` prints)."""
    terms = list(_positive_labels(query))
    found = [c for name, c in labels if any(_label_matches(t, [(name, c)]) for t in terms)]
    return max(found, default=None)


def _positive_labels(query: Query, negated: bool = False) -> Iterable[Label]:
    if isinstance(query, Label) and not negated:
        yield query
    elif isinstance(query, Not):
        yield from _positive_labels(query.item, not negated)
    elif isinstance(query, (And, Or)):
        for item in query.items:
            yield from _positive_labels(item, negated)


def key_prefix(query: Query) -> str:
    """A prefix every match's key starts with (to list less), or "" when the query names none."""
    if isinstance(query, KeyPrefix):
        return query.prefix
    if isinstance(query, And):
        prefixes = [item.prefix for item in query.items if isinstance(item, KeyPrefix)]
        return max(prefixes, key=len, default="")
    return ""
