"""The sentence record: what every inference path returns, one per sentence, defined once here.

The class bodies of :class:`ActorMention` and :class:`SentenceRecord` are the field table: each line
names a field, its type, its *kind* (how it is stored outside Python) and what it means. Everything else
is derived from them: :data:`RECORD_COLUMNS`, the Arrow schema of the batch job's Parquet files
(:func:`arrow_schema`), the Spark DDL (:func:`spark_ddl`), the JSON form (:meth:`SentenceRecord.to_json`,
the shape of JSONL files and of served answers) and, in :mod:`conflict_events.tracking`, the MLflow
signature. Adding a field is one line here plus filling it in where the predictor builds records (and a
row in the table of docs/INFERENCE.md, which ``tests/test_records.py`` holds to this one).

Kinds: ``string``, ``long`` (64-bit int), ``double``, ``string_list``, ``score_map`` (string -> double),
``actor_list`` (a list of :class:`ActorMention`) and ``place_list`` (a list of :class:`PlaceMention`).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Sequence

if TYPE_CHECKING:
    import pyarrow as pa

Kind = Literal["string", "long", "double", "string_list", "score_map", "actor_list", "place_list"]


@dataclass(frozen=True)
class Field:
    """One row of the field table, as the derived schemas read it."""

    name: str
    kind: Kind
    nullable: bool
    doc: str


def _column(kind: Kind, doc: str, nullable: bool = False, default: Any = MISSING) -> Any:
    # Fields added after the first release come last with a default (None), so records built by position
    # and readers of the older columns keep working.
    return field(default=default, metadata={"column": (kind, nullable, doc)})


def field_table(record_type: type) -> tuple[Field, ...]:
    """The field table of :class:`SentenceRecord` or :class:`ActorMention`, in declaration order."""
    return tuple(Field(f.name, *f.metadata["column"]) for f in fields(record_type))


@dataclass(frozen=True)
class ActorMention:
    """An actor span of a sentence; offsets are into the document, so ``document[char_start:char_end] == text``."""

    role: str = _column("string", "the role *name* (`source`, `target`, `reciprocal`), not its BIO tag")
    text: str = _column("string", "`document[char_start:char_end]`")
    char_start: int = _column("long", "start of the span in the **document**")
    char_end: int = _column("long", "end of the span in the document (exclusive)")
    score: float = _column("double", "the mean tag probability over the span's sub-words")
    # Actor resolution (conflict_events/resolution, docs/INFERENCE.md "Resolution"); null when it is off.
    country: str | None = _column(
        "string",
        "ISO 3166-1 alpha-3 code of the actor's country; null for international organisations, actors with no "
        "inferable country, and when resolution is off",
        nullable=True,
        default=None,
    )
    sector: str | None = _column(
        "string", "the actor's sector, one code of the codebook (`GOV`, `MIL`, ..., `UNK`); null when resolution is off",
        nullable=True,
        default=None,
    )
    org: str | None = _column(
        "string", "canonical short name of an intergovernmental or non-governmental organisation (`UN`, `NATO`, `ICRC`), else null",
        nullable=True,
        default=None,
    )
    resolved_by: str | None = _column(
        "string",
        "what decided `country`: `span`, `sentence` or `document`; null when nothing did (and when resolution is off)",
        nullable=True,
        default=None,
    )

    def to_json(self) -> dict[str, Any]:
        return _to_json(self, ACTOR_FIELDS)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ActorMention":
        return cls(**_from_json(data, ACTOR_FIELDS))


@dataclass(frozen=True)
class PlaceMention:
    """A place named in the document; offsets are into the document, so ``document[char_start:char_end] == text``."""

    text: str = _column("string", "`document[char_start:char_end]`")
    char_start: int = _column("long", "start of the place name in the **document**")
    char_end: int = _column("long", "end of the place name in the document (exclusive)")
    kind: str = _column("string", "`country`, `region` or `city`")
    country: str = _column("string", "ISO 3166-1 alpha-3 code of the country the place is in (or is)")
    geonames_id: int | None = _column("long", "the GeoNames id, where the gazetteer has one", nullable=True)
    latitude: float | None = _column("double", "latitude of a city (WGS84 degrees); null for countries and regions", nullable=True)
    longitude: float | None = _column("double", "longitude of a city; null for countries and regions", nullable=True)

    def to_json(self) -> dict[str, Any]:
        return _to_json(self, PLACE_FIELDS)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "PlaceMention":
        return cls(**_from_json(data, PLACE_FIELDS))


@dataclass(frozen=True)
class SentenceRecord:
    """One sentence of one document and both heads' predictions for it (the same shape for every model,
    multiclass or multilabel)."""

    doc_id: str = _column("string", "the document id")
    sentence_index: int = _column("long", "0-based position of the sentence in the document")
    char_start: int = _column("long", "start of the sentence in the document, stripped of surrounding whitespace")
    char_end: int = _column("long", "end of the sentence in the document (exclusive)")
    text: str = _column("string", "`document[char_start:char_end]`")
    event_type: str | None = _column(
        "string", "`event_types[0]`; null only when a multilabel model decides no class", nullable=True
    )
    event_code: int | None = _column(
        "long", "the numeric code of `event_type` from the model's label schema", nullable=True
    )
    event_types: tuple[str, ...] = _column(
        "string_list",
        "the decided event classes, highest score first: exactly one for a multiclass model, zero or more "
        "(score ≥ the model's threshold for that class) for a multilabel model",
    )
    event_scores: Mapping[str, float] = _column(
        "score_map", "probability of every event class (softmax for multiclass, sigmoid for multilabel)"
    )
    actors: tuple[ActorMention, ...] = _column("actor_list", "the sentence's actor mentions, in document order")
    model_uri: str = _column(
        "string",
        "the model as given (`--model`), except that the batch job pins an alias to the version it named when the "
        "job started (`models:/name@champion` → `models:/name/3`); `pyfunc` when served",
    )
    model_version: str | None = _column(
        "string",
        "the registry version for a `models:/name/N` or `models:/name@alias` URI, else `sha256:<16 hex>` of "
        "the weights file",
        nullable=True,
    )
    locations: tuple[PlaceMention, ...] | None = _column(
        "place_list", "the places named in the sentence, in document order; null when resolution is off", nullable=True, default=None
    )
    event_country: str | None = _column(
        "string",
        "ISO 3166-1 alpha-3 code of the country where the event took place; null when it cannot be told (and when "
        "resolution is off)",
        nullable=True,
        default=None,
    )
    # Stories (conflict_events/stories.py): set by the batch job and the Spark engine, which see the archive.
    story_id: str | None = _column(
        "string",
        "the story of the document: the `doc_id` of the first document of its group of near-duplicates (wire "
        "copies, updates) in the job's input order; null when served, and when `inference.stories` is off",
        nullable=True,
        default=None,
    )
    duplicate_of: str | None = _column(
        "string",
        "the `doc_id` of the earliest document this one is a near-duplicate of; null for the first document of "
        "a story (and where `story_id` is null)",
        nullable=True,
        default=None,
    )

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON values, keys in column order: a JSONL line, a served prediction."""
        return _to_json(self, RECORD_FIELDS)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SentenceRecord":
        """The inverse of :meth:`to_json`; also reads a Parquet row, whose maps come back as key/value pairs."""
        return cls(**_from_json(data, RECORD_FIELDS))


@dataclass(frozen=True)
class EventRow:
    """One row of the batch job's events table (``events.parquet``/``.jsonl``): the sentences of one story that
    report the same event (code, source, target, country), built from the records (``conflict_events/stories.py``)."""

    story_id: str | None = _column("string", "the story (`story_id` of the records)", nullable=True)
    event_code: int = _column("long", "the event code (`event_code` of the records)")
    source_country: str | None = _column("string", "`country` of a `source` actor of the sentences; null when none", nullable=True)
    source_sector: str | None = _column("string", "`sector` of that `source` actor", nullable=True)
    target_country: str | None = _column("string", "`country` of a `target` actor of the sentences; null when none", nullable=True)
    target_sector: str | None = _column("string", "`sector` of that `target` actor", nullable=True)
    event_country: str | None = _column("string", "`event_country` of the sentences", nullable=True)
    sentence_ids: tuple[str, ...] = _column("string_list", "the supporting sentences, `doc_id:sentence_index`, in record order")
    count: int = _column("long", "the number of supporting sentences")

    def to_json(self) -> dict[str, Any]:
        return _to_json(self, EVENT_FIELDS)


ACTOR_FIELDS = field_table(ActorMention)
PLACE_FIELDS = field_table(PlaceMention)
RECORD_FIELDS = field_table(SentenceRecord)
RECORD_COLUMNS = tuple(f.name for f in RECORD_FIELDS)
EVENT_FIELDS = field_table(EventRow)
EVENT_COLUMNS = tuple(f.name for f in EVENT_FIELDS)

# --- JSON ------------------------------------------------------------------------------------------
# Scalars (and null) are stored as they are; only the containers change between Python and JSON.
_TO_JSON: dict[str, Callable[[Any], Any]] = {
    "string_list": list,
    "score_map": dict,
    "actor_list": lambda actors: [actor.to_json() for actor in actors],
    "place_list": lambda places: [place.to_json() for place in places],
}
_FROM_JSON: dict[str, Callable[[Any], Any]] = {
    "string_list": tuple,
    "score_map": dict,  # from a mapping, or from the (key, value) pairs pyarrow reads a map as
    "actor_list": lambda actors: tuple(ActorMention.from_json(actor) for actor in actors),
    "place_list": lambda places: tuple(PlaceMention.from_json(place) for place in places),
}


def _to_json(record: Any, table: tuple[Field, ...]) -> dict[str, Any]:
    data = {}
    for f in table:
        value = getattr(record, f.name)
        convert = _TO_JSON.get(f.kind)
        data[f.name] = convert(value) if convert is not None and value is not None else value
    return data


def _from_json(data: Mapping[str, Any], table: tuple[Field, ...]) -> dict[str, Any]:
    values = {}
    for f in table:
        # A nullable field may be absent: records written before the field existed read back with it null.
        value = data.get(f.name) if f.nullable else data[f.name]
        convert = _FROM_JSON.get(f.kind)
        values[f.name] = convert(value) if convert is not None and value is not None else value
    return values


# --- Arrow (the batch job's Parquet files) ---------------------------------------------------------
def arrow_schema() -> "pa.Schema":
    """The Arrow schema of a table of records.

    Every column and struct field is nullable here, the required ones too: that is the layout the
    Parquet files have always had (optional columns), kept so that existing readers see no change.
    Which fields may be null is stated by the field table and the MLflow signature.
    """
    import pyarrow as pa

    return pa.schema(_arrow_columns(RECORD_FIELDS))


def events_arrow_schema() -> "pa.Schema":
    """The Arrow schema of the events table (nullable throughout, as :func:`arrow_schema`)."""
    import pyarrow as pa

    return pa.schema(_arrow_columns(EVENT_FIELDS))


def arrow_table(records: Sequence[SentenceRecord]) -> "pa.Table":
    """Records as an Arrow table of :func:`arrow_schema` (what the batch job writes to Parquet)."""
    import pyarrow as pa

    return pa.Table.from_pylist([record.to_json() for record in records], schema=arrow_schema())


def _arrow_columns(table: tuple[Field, ...]) -> list:
    return [(f.name, _arrow_type(f.kind)) for f in table]


def _arrow_type(kind: Kind):
    import pyarrow as pa

    if kind == "actor_list":
        return pa.list_(pa.struct(_arrow_columns(ACTOR_FIELDS)))
    if kind == "place_list":
        return pa.list_(pa.struct(_arrow_columns(PLACE_FIELDS)))
    return {
        "string": pa.string(),
        "long": pa.int64(),
        "double": pa.float64(),
        "string_list": pa.list_(pa.string()),
        "score_map": pa.map_(pa.string(), pa.float64()),
    }[kind]


# --- Spark -----------------------------------------------------------------------------------------
_SPARK_TYPES = {
    "string": "string",
    "long": "bigint",
    "double": "double",
    "string_list": "array<string>",
    "score_map": "map<string,double>",
}


def spark_ddl() -> str:
    """The Spark SQL type of one record, in DDL (``struct<doc_id:string,...>``); Spark's own schemas are
    nullable throughout, as :func:`arrow_schema` is."""
    return _spark_struct(RECORD_FIELDS)


def _spark_struct(table: tuple[Field, ...]) -> str:
    return "struct<" + ",".join(f"{f.name}:{_spark_type(f.kind)}" for f in table) + ">"


def _spark_type(kind: Kind) -> str:
    if kind == "actor_list":
        return f"array<{_spark_struct(ACTOR_FIELDS)}>"
    if kind == "place_list":
        return f"array<{_spark_struct(PLACE_FIELDS)}>"
    return _SPARK_TYPES[kind]


# --- the served model's request ------------------------------------------------------------------
# What the pyfunc (serving, ``spark_udf``) takes: a table of documents, ``text`` required and ``id``
# optional (the row position when absent), and these params with their defaults. ``layout`` chooses one row
# per sentence (the record columns) or one row per document (a column ``records``: the JSON list of that
# document's records; ``spark_udf`` needs one output row per input row).
REQUEST_COLUMNS: tuple[tuple[str, bool], ...] = (("id", False), ("text", True))  # (name, required)
SERVING_LAYOUTS = ("sentences", "documents")
SERVING_PARAMS: dict[str, str] = {"layout": "sentences", "model_uri": "", "model_version": ""}
