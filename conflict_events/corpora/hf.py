"""Corpora as Hugging Face ``datasets.Dataset``: every reader's examples convert to a typed dataset and back
without loss, and a split may be a dataset saved to disk or a hub dataset (``dataset:`` in the config).

``to_dataset(examples, schema)`` writes one row per :class:`EventExample` with the features of
:func:`dataset_features`:

| column | feature |
|---|---|
| ``id``, ``text`` | ``string`` |
| ``tokens`` | list of ``{text: string, char_start: int32, char_end: int32}`` |
| ``event`` | multiclass: ``ClassLabel`` of ``labels.event_classes`` (``-1`` when unlabeled, the hub's convention); multilabel: a list of that ``ClassLabel`` |
| ``has_event`` | ``bool``: whether the example has an event label |
| ``actors`` | list of ``{role: ClassLabel of labels.actor_roles, char_start: int32, char_end: int32}`` |
| ``has_actors`` | ``bool``: whether the actor layer is labeled (``actors`` ``[]`` with ``true``: labeled, no actors) |
| ``fillers`` | list of ``{role: ClassLabel of the roles, mentions: list of string}`` (document-level corpora, MUC-4) |
| ``has_fillers`` | ``bool``: whether the example has fillers at all (sentence-level corpora: ``false``) |
| ``source`` | ``{path: string, line: int64}`` or null: where the example was read from |

Why a ``has_*`` column and not a null: ``[]`` is a real value of two layers (labeled, no actors; a
multilabel example with no class), so a missing layer needs its own mark, and a null list or label turns
into a float ``NaN`` in ``to_pandas`` (what MLflow and most tools read) and is easily lost when someone
rebuilds a column with ``map``. A flag survives all of that and reads plainly
(``dataset.filter(lambda row: row["has_actors"])``). Without a flag the value is ``[]``/``-1``.

``from_dataset(dataset, schema, display)`` reads such a dataset back into a ``ReadResult``, never raising:
every row goes through the JSONL reader's checks (:func:`~conflict_events.corpora.jsonl.example_from_record`),
so a bad row is an error naming the row and the field (``error: corpus row 3 [actors[0]]: ...``). It also
reads datasets made elsewhere, e.g. on the hub: only ``id`` and ``text`` are required; ``event`` and a
span's ``role`` may be ``ClassLabel`` (read by the dataset's own names, so its class order need not be the
config's) or strings; without a ``has_*`` column a null value means unlabeled (and ``-1`` for a
``ClassLabel`` event); without a ``source`` column each example's source is the dataset and its row
(``SourceRef(display, row)``, the row as ``dataset[row]`` counts it). Other columns are a warning.

``read_dataset(reference, root, schema, split)`` is the config's ``dataset:`` kind: a folder written by
``Dataset.save_to_disk`` (relative to ``data.root``), or ``hf:owner/name[:split]`` loaded with
``datasets.load_dataset`` (offline it is read from the Hugging Face cache; when it cannot be loaded the
error names the id). ``datasets`` is imported when one of these functions runs (it takes a second to import).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from conflict_events.config import HUB_DATASET
from conflict_events.corpora.jsonl import RecordError, example_from_record
from conflict_events.corpora.textfile import ReadResult, error, warning
from conflict_events.errors import DataError, Issue, Location
from conflict_events.labels import LabelSchema
from conflict_events.schema import EventExample, SourceRef

if TYPE_CHECKING:
    import datasets

HUB_PREFIX = "hf:"
# The hub split read when a reference names none: the hub calls the dev split "validation".
DEFAULT_HUB_SPLIT = {"train": "train", "dev": "validation", "test": "test", "evaluation": "test"}
REQUIRED_COLUMNS = ("id", "text")
KNOWN_COLUMNS = ("id", "text", "tokens", "event", "has_event", "actors", "has_actors", "fillers", "has_fillers", "source")


def is_hub_reference(reference: str) -> bool:
    return reference.startswith(HUB_PREFIX)


def dataset_features(schema: LabelSchema) -> "datasets.Features":
    """The typed columns of :func:`to_dataset` for ``schema`` (see the module docstring)."""
    from datasets import ClassLabel, Features, Value

    event_label = ClassLabel(names=schema.event_names)
    role_label = ClassLabel(names=schema.role_tags)
    offsets = {"char_start": Value("int32"), "char_end": Value("int32")}
    # Plain lists ([feature]) mean "list of" in datasets 3 and 4 alike (4 spells it List(feature)).
    return Features(
        {
            "id": Value("string"),
            "text": Value("string"),
            "tokens": [{"text": Value("string"), **offsets}],
            "event": [event_label] if schema.multilabel else event_label,
            "has_event": Value("bool"),
            "actors": [{"role": role_label, **offsets}],
            "has_actors": Value("bool"),
            "fillers": [{"role": role_label, "mentions": [Value("string")]}],
            "has_fillers": Value("bool"),
            "source": {"path": Value("string"), "line": Value("int64")},
        }
    )


def to_dataset(examples: Sequence[EventExample], schema: LabelSchema) -> "datasets.Dataset":
    """``examples`` as a typed ``datasets.Dataset`` (one row each, in order). An event class or role the
    schema does not know is a :class:`DataError` naming the example (a ``ClassLabel`` cannot hold it)."""
    from datasets import Dataset

    events = {name: index for index, name in enumerate(schema.event_names)}
    roles = {tag: index for index, tag in enumerate(schema.role_tags)}
    rows = [_row(example, schema, events, roles) for example in examples]
    return Dataset.from_list(rows, features=dataset_features(schema))


def _row(example: EventExample, schema: LabelSchema, events: dict[str, int], roles: dict[str, int]) -> dict[str, Any]:
    def refuse(field: str, message: str) -> DataError:
        where = example.source or SourceRef(f"example {example.id}", 0)
        return DataError(Issue(Location(where.path, where.line or None, field), message))

    def code(table: dict[str, int], name: str, field: str, what: str) -> int:
        if name not in table:
            raise refuse(field, f"unknown {what} {name!r}; expected one of {list(table)}")
        return table[name]

    if schema.multilabel:
        names = [] if example.event is None else [example.event] if isinstance(example.event, str) else sorted(example.event)
        event: int | list[int] = [code(events, name, "event", "event class") for name in names]
    elif isinstance(example.event, frozenset):
        raise refuse("event", "a multilabel event set in a multiclass task")
    else:
        event = -1 if example.event is None else code(events, example.event, "event", "event class")
    return {
        "id": example.id,
        "text": example.text,
        "tokens": [{"text": t.text, "char_start": t.char_start, "char_end": t.char_end} for t in example.tokens],
        "event": event,
        "has_event": example.event is not None,
        "actors": [
            {"role": code(roles, a.role, "actors", "actor role"), "char_start": a.char_start, "char_end": a.char_end}
            for a in example.actors or ()
        ],
        "has_actors": example.actors is not None,
        "fillers": [
            {"role": code(roles, f.role, "fillers", "filler role"), "mentions": list(f.mentions)} for f in example.fillers or ()
        ],
        "has_fillers": example.fillers is not None,
        "source": None if example.source is None else {"path": example.source.path, "line": example.source.line},
    }


# --- reading -------------------------------------------------------------------------------------
def from_dataset(dataset: "datasets.Dataset", schema: LabelSchema, display: str) -> ReadResult:
    """The examples of ``dataset`` (see the module docstring); bad rows are errors naming row and field."""
    columns = list(dataset.column_names)
    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    if missing:
        return ReadResult([], [error(display, None, ", ".join(missing), f"the dataset has no column {', '.join(map(repr, missing))} (columns: {', '.join(columns)})")])
    issues = [
        warning(display, None, column, f"unknown column '{column}' ignored (known columns: {', '.join(KNOWN_COLUMNS)})")
        for column in columns
        if column not in KNOWN_COLUMNS
    ]
    if len(dataset) == 0:
        return ReadResult([], issues + [error(display, None, None, "the dataset has no rows")])
    features = dataset.features
    decode = {
        "event": _decoder(_element(features.get("event"))),
        "actors": _decoder(_role_feature(features.get("actors"))),
        "fillers": _decoder(_role_feature(features.get("fillers"))),
    }
    examples: list[EventExample] = []
    first_row_of_id: dict[str, int] = {}
    rows = dataset.with_format(None).select_columns([column for column in columns if column in KNOWN_COLUMNS])
    for index, row in enumerate(rows):
        where = f"{display} row {index}"
        try:
            record = _record(row, decode)
            source = _source(row, display, index)
            example = example_from_record(record, schema, source)
        except RecordError as problem:
            issues.append(error(where, None, problem.field, problem.message))
            continue
        if example.id in first_row_of_id:
            issues.append(error(where, None, "id", f"duplicate id '{example.id}' (first used in row {first_row_of_id[example.id]})"))
            continue
        first_row_of_id[example.id] = index
        examples.append(example)
    return ReadResult(examples, issues)


def _element(feature: Any) -> Any:
    """The element of a list feature (``List``/``Sequence``, or a plain ``[feature]``); any other feature itself."""
    if isinstance(feature, list):
        return feature[0] if feature else None
    return getattr(feature, "feature", feature)


def _role_feature(feature: Any) -> Any:
    """The feature of ``role`` inside the list of structs ``actors``/``fillers``, if any."""
    element = _element(feature)
    return element.get("role") if isinstance(element, dict) else None


def _decoder(feature: Any) -> Callable[[Any], Any]:
    """Turns a stored label into its name: a ``ClassLabel`` value by the dataset's own names, a string as is."""
    from datasets import ClassLabel

    if not isinstance(feature, ClassLabel):
        return lambda value: value

    def name(value: Any) -> Any:
        if isinstance(value, int) and 0 <= value < feature.num_classes:
            return feature.int2str(value)
        return value  # a value the ClassLabel cannot name: _check_named reports it

    return name


def _labeled(row: dict[str, Any], layer: str, value: Any, unlabeled: Any = None) -> bool:
    """The ``has_<layer>`` flag decides; without one, a null value (or ``unlabeled``) means unlabeled."""
    flag = row.get(f"has_{layer}")
    if flag is not None:
        return bool(flag)
    return value is not None and not (unlabeled is not None and not isinstance(value, list) and value == unlabeled)


def _record(row: dict[str, Any], decode: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """The row in the canonical JSON form the JSONL reader checks (a missing layer is a missing key)."""
    record: dict[str, Any] = {"id": row["id"], "text": row["text"]}
    if row.get("tokens"):
        record["tokens"] = row["tokens"]
    event = row.get("event")
    if _labeled(row, "event", event, unlabeled=-1):
        if isinstance(event, list):
            record["event"] = [decode["event"](value) for value in event]
        elif isinstance(event, (str, int)) and not isinstance(event, bool):
            record["event"] = decode["event"](event)
        else:
            raise RecordError("event", f"has_event is true but the event is {event!r}")
        _check_named(record["event"], "event")
    for layer in ("actors", "fillers"):
        value = row.get(layer)
        if not _labeled(row, layer, value):
            continue
        if not isinstance(value, list):
            raise RecordError(layer, f"has_{layer} is true but {layer} is {value!r}")
        record[layer] = [{**item, "role": decode[layer](item.get("role"))} if isinstance(item, dict) else item for item in value]
        for index, item in enumerate(record[layer]):
            if isinstance(item, dict):
                _check_named(item["role"], f"{layer}[{index}]")
    return record


def _check_named(value: Any, field: str) -> None:
    """A label left as an integer is one the dataset's ``ClassLabel`` cannot name."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, int) and not isinstance(item, bool):
            raise RecordError(field, f"label {item} is not one of the dataset's class labels")


def _source(row: dict[str, Any], display: str, index: int) -> SourceRef | None:
    if "source" not in row:
        return SourceRef(display, index)
    source = row["source"]
    if source is None:
        return None
    if not isinstance(source, dict) or not isinstance(source.get("path"), str) or not isinstance(source.get("line"), int):
        raise RecordError("source", f"expected {{'path': string, 'line': integer}} or null, got {source!r}")
    return SourceRef(source["path"], source["line"])


# --- the config's `dataset:` kind ----------------------------------------------------------------
def read_dataset(reference: str, root: Path, schema: LabelSchema, split: str) -> ReadResult:
    """Load the ``dataset:`` of a split (a ``save_to_disk`` folder under ``root`` or ``hf:owner/name[:split]``)
    and read it with :func:`from_dataset`; a dataset that cannot be loaded is an error naming it."""
    loaded = _load_hub(reference, split) if is_hub_reference(reference) else _load_from_disk(reference, root)
    if isinstance(loaded, Issue):
        return ReadResult([], [loaded])
    return from_dataset(loaded, schema, reference)


def _load_from_disk(reference: str, root: Path) -> "datasets.Dataset | Issue":
    import datasets

    path = root / reference
    if not path.is_dir():
        return error(reference, None, None, f"dataset folder not found ({path}); expected the output of Dataset.save_to_disk")
    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, OSError, ValueError) as problem:
        return error(reference, None, None, f"not a dataset saved with Dataset.save_to_disk ({path}): {problem}")
    if isinstance(loaded, datasets.DatasetDict):
        splits = ", ".join(loaded)
        return error(
            reference, None, None,
            f"a DatasetDict (splits: {splits}); name one split's folder, e.g. {reference.rstrip('/')}/{next(iter(loaded))}",
        )
    return loaded


def _load_hub(reference: str, split: str) -> "datasets.Dataset | Issue":
    import datasets

    match = HUB_DATASET.match(reference)
    if match is None:  # the config checks the form; a caller outside it may not
        return error(reference, None, None, "expected hf:owner/name or hf:owner/name:split")
    name, hub_split = match["name"], match["split"] or DEFAULT_HUB_SPLIT.get(split, "train")
    try:
        loaded = datasets.load_dataset(name, split=hub_split)
    except Exception as problem:  # the hub raises many kinds (offline, not found, gated): each is this one error
        detail = str(problem).strip().splitlines()[0] if str(problem).strip() else type(problem).__name__
        return error(
            reference, None, None,
            f"cannot load hub dataset '{name}' (split '{hub_split}'): {detail}. Offline, only a dataset already in "
            "the Hugging Face cache can be loaded; or save it with Dataset.save_to_disk and name the folder",
        )
    if not isinstance(loaded, datasets.Dataset):
        return error(reference, None, None, f"hub dataset '{name}' split '{hub_split}' is not a single Dataset")
    return loaded
