"""Recipe loading: YAML, then dotted `key=value` overrides, then strict validation.

Every experiment number lives in a recipe. `load()` is the one loader: unknown keys and
wrong types are rejected with the file, the line and the dotted key. A model reference in a
recipe is either a name, resolved to `recipes/models/<name>.yaml`, or an inline mapping.

The recipes ship inside the package (`qednano/recipes/`). A recipe, a named part (model,
benchmark, scaffold) or a data file a recipe names is looked up in the user's own files
first, then in the package: a recipe argument as a path from the current directory, then as
a name or path under the package's recipes (`demo`, `eval/table1-qed-nano`,
`recipes/eval/table1-qed-nano.yaml`); a named part in the `recipes/` folder the recipe sits
in, then `./recipes`, then the package's.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    """Bad input in a recipe or data file; the message names file, line and field."""


class Strict(BaseModel):
    """Base of every config schema: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


PACKAGE_RECIPES = Path(__file__).resolve().parent / "recipes"
"""The recipes shipped with the package."""

RUN_FOLDERS = ("eval", "data", "sft", "grpo", "rc")
"""Folders of recipes that a command runs (the others hold parts that runs name)."""


def recipe_roots(recipe: Path) -> list[Path]:
    """Where named parts are looked up, in order: the user's `recipes/` folder the recipe sits in, ./recipes, the package's."""
    roots = [parent for parent in recipe.resolve().parents if parent.name == "recipes"][:1]
    roots = [r for r in roots if r != PACKAGE_RECIPES] + [Path("recipes").resolve(), PACKAGE_RECIPES]
    return list(dict.fromkeys(roots))


def shipped(relative: str | Path) -> Path | None:
    """The package's file or folder at `relative` (a leading `recipes/` and a missing `.yaml` allowed), if there is one."""
    parts = Path(relative).parts
    rel = Path(*parts[1:]) if parts[:1] == ("recipes",) and len(parts) > 1 else Path(relative)
    if Path(relative).is_absolute():
        return None
    exact, named = PACKAGE_RECIPES / rel, PACKAGE_RECIPES / rel.with_name(rel.name + ".yaml")
    for path in (exact, named):
        if path.is_file():
            return path
    return exact if exact.is_dir() else None


def find_file(path: str | Path) -> Path:
    """A file or folder a recipe or a user names: from the current directory, else the package's copy, else as given."""
    given = Path(path)
    return given if given.exists() else shipped(given) or given


def recipe_names(roots: list[Path] | None = None) -> dict[str, list[str]]:
    """Every recipe by folder (`models`, `benchmarks`, `scaffolds`, runs): ./recipes and the package's, merged."""
    names: dict[str, set[str]] = {}
    for root in roots or [Path("recipes").resolve(), PACKAGE_RECIPES]:
        for path in root.rglob("*.yaml") if root.is_dir() else []:
            rel = path.relative_to(root)
            folder = rel.parts[0] if len(rel.parts) > 1 else "runs"
            names.setdefault(folder, set()).add(rel.with_suffix("").as_posix())
    return {folder: sorted(found) for folder, found in sorted(names.items())}


def find_recipe(recipe: str | Path) -> Path:
    """The recipe file a command argument names; an unknown name lists the run recipes that exist."""
    given = Path(recipe)
    path = given if given.is_file() else shipped(given)
    if path is not None and path.is_file():
        return path
    runs = [n for folder, found in recipe_names().items() if folder in (*RUN_FOLDERS, "runs") for n in found]
    raise ConfigError(
        f"{recipe}: file not found, and no shipped recipe of that name; the run recipes: {', '.join(runs)}"
    )


class Loader(yaml.SafeLoader):
    """YAML as recipes mean it: `1e-3` is a float (YAML 1.1 reads a number without a dot as a string)."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    """One YAML document through `Loader` (a SafeLoader: no tags that build objects)."""
    loader = Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (['a','b','c'], value parsed as a YAML scalar)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected key=value")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except (yaml.YAMLError, RecursionError) as err:
        raise ConfigError(f"override {item!r}: value is not valid YAML: {err}") from None
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `data` with each dotted override set (intermediate mappings created)."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        keys, value = parse_override(item)
        node = out
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {} if child is None else child
                if not isinstance(child, dict):
                    raise ConfigError(f"override {item!r}: {key!r} is not a mapping")
                node[key] = child
            node = child
        node[keys[-1]] = value
    return out


def read_yaml(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    """The mapping in a YAML file and its node tree (for line numbers)."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=Loader)
        data = parse_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping at the top level, got {type(data).__name__}")
    return data, node


def locate(node: yaml.Node | None, loc: tuple[int | str, ...]) -> tuple[int | None, str]:
    """The 1-based line of the deepest YAML node along a validation error location, and the
    location as a dotted key without the union labels pydantic puts in it (`tagged-union[...]`,
    `file`), so `problems.tagged-union[...].file.limit` reads `problems.limit`."""
    line, shown = None, []
    for i, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == part), None)
            if pair is None:
                if any(k.value == later for later in loc[i + 1 :] for k, _ in node.value):
                    continue  # a union label: a later part is a key of this mapping
                node = None  # a key the YAML lacks (missing, or set by an override)
            else:
                line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        shown.append(str(part))
    return line, ".".join(shown)


Sources = dict[tuple[str, str], tuple[Path, yaml.Node | None]]
"""(`models`, role) -> the model file that role was read from, and its node tree."""


def describe(
    err: ValidationError,
    where: str,
    node: yaml.Node | None = None,
    sources: Sources | None = None,
    *,
    data: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    schema: Any = None,
) -> str:
    """One line per validation error: `file:line: key: message`, or `override 'k=v': key: message`.

    An error inside a model read from `recipes/models/<name>.yaml` names that file when
    the key is written there (not when an override set it). An error at a key a command-line
    override set blames the override, quoted, never a line of the recipe. An unknown key
    gets the nearest valid key of its mapping as a suggestion.
    """
    lines = []
    set_by = [(parse_override(o)[0], o) for o in overrides or []]
    for e in err.errors():
        loc = tuple(e["loc"])
        (line, key), file = locate(node, loc), where
        if data is not None:
            key = ".".join(plain_loc(data, loc))
        source = (sources or {}).get((str(loc[0]), str(loc[1]))) if len(loc) > 2 else None
        if source is not None:
            model_line, model_key = locate(source[1], loc[2:])
            if model_line is not None:
                line, key, file = model_line, f"{loc[0]}.{loc[1]}.{model_key}", str(source[0])
        key = key or "(top level)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        if e["type"] == "extra_forbidden" and schema is not None:
            near = difflib.get_close_matches(str(loc[-1]), sorted(keys_at(schema, loc[:-1])), n=1, cutoff=0.6)
            msg += f"; did you mean {near[0]!r}?" if near else ""
        parts = key.split(".")
        blamed = next((o for path, o in reversed(set_by) if parts[: len(path)] == path), None)
        if blamed is not None:
            lines.append(f"override {blamed!r}: {key}: {msg}")
            continue
        prefix = f"{file}:{line}" if line else file
        lines.append(f"{prefix}: {key}: {msg}")
    return "\n".join(lines)


def plain_loc(data: Any, loc: tuple[int | str, ...]) -> list[str]:
    """A validation error's location without the union labels pydantic adds (`tagged-union[...]`, a tag
    such as `imo-proofbench` or `file`): a part that is not a key of the data where a later part is."""
    shown, node = [], data
    for i, part in enumerate(loc):
        if isinstance(node, dict):
            if part not in node and any(later in node for later in loc[i + 1 :]):
                continue
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
        shown.append(str(part))
    return shown


def members(tp: Any) -> list[Any]:
    """The types a field annotation may hold: Annotated and unions unwrapped."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return members(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(tp) for m in members(arg)]
    return [tp]


def keys_at(schema: Any, loc: tuple[int | str, ...]) -> set[str]:
    """The field names of the mapping at `loc` of `schema` (pydantic models, dicts, lists, unions, tags)."""
    current = members(schema)
    for part in loc:
        following: list[Any] = []
        for tp in current:
            origin, args = typing.get_origin(tp), typing.get_args(tp)
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                if part in tp.model_fields:
                    following += members(tp.model_fields[part].annotation)
                elif any(f.default == part for f in tp.model_fields.values()):
                    following.append(tp)  # a union tag in the location: the same model
            elif origin is dict and len(args) == 2:
                following += members(args[1])
            elif origin is list and args and isinstance(part, int):
                following += members(args[0])
        current = following
    return {name for tp in current if isinstance(tp, type) and issubclass(tp, BaseModel) for name in tp.model_fields}


def find_part(roots: list[Path], folder: str, name: str, what: str) -> Path:
    """`<root>/<folder>/<name>.yaml` in the first root that has it; an unknown name lists those that exist."""
    for root in roots:
        path = root / folder / f"{name}.yaml"
        if path.is_file():
            return path
    known = [n.partition("/")[2] for n in recipe_names(roots).get(folder, [])]
    raise ConfigError(f"{what}: {folder}/{name}.yaml not found; the {folder} that exist: {', '.join(known)}")


def resolve_models(data: dict[str, Any], roots: list[Path], sources: Sources | None = None) -> dict[str, Any]:
    """Replace model names under `models:` (and an eval recipe's `roles:`) with `recipes/models/<name>.yaml`.

    Each file read is recorded in `sources`, so validation errors can name it.
    """
    out = dict(data)
    roles = data.get("roles")
    if isinstance(roles, dict):  # an eval recipe's per-model scaffold roles: {label: {role: name}}
        out["roles"] = {
            label: resolve_models({"models": refs}, roots)["models"] if isinstance(refs, dict) else refs
            for label, refs in roles.items()
        }
    models = data.get("models")
    if not isinstance(models, dict):
        return out
    resolved = {}
    for role, ref in models.items():
        if isinstance(ref, str):
            path = find_part(roots, "models", ref, f"model {ref!r} (role {role!r})")
            ref, node = read_yaml(path)
            ref.setdefault("name", path.stem)
            if sources is not None:
                sources["models", role] = (path, node)
        resolved[role] = ref
    return {**out, "models": resolved}


def read_part(roots: list[Path], folder: str, name: str, what: str) -> dict[str, Any]:
    """The mapping in `recipes/<folder>/<name>.yaml` (a named benchmark or scaffold preset)."""
    return read_yaml(find_part(roots, folder, name, f"{what} {name!r}"))[0]


def resolve_parts(data: dict[str, Any], roots: list[Path]) -> dict[str, Any]:
    """Replace names with the recipes they name.

    `benchmarks: {label: name}` reads `recipes/benchmarks/<name>.yaml` (its model names
    resolved too); `scaffolds: {label: name}` and `scaffold: name` read
    `recipes/scaffolds/<name>.yaml`.
    """
    out = dict(data)

    def benchmark(ref: Any) -> Any:
        ref = read_part(roots, "benchmarks", ref, "benchmark") if isinstance(ref, str) else ref
        return resolve_models(ref, roots) if isinstance(ref, dict) else ref

    if isinstance(out.get("benchmarks"), dict):
        out["benchmarks"] = {label: benchmark(ref) for label, ref in out["benchmarks"].items()}
    if isinstance(out.get("scaffolds"), dict):
        out["scaffolds"] = {
            label: read_part(roots, "scaffolds", ref, "scaffold") if isinstance(ref, str) else ref
            for label, ref in out["scaffolds"].items()
        }
    if isinstance(out.get("scaffold"), str):
        out["scaffold"] = read_part(roots, "scaffolds", out["scaffold"], "scaffold")
    return out


def load(recipe: str | Path, overrides: list[str] | None, schema: type[T]) -> T:
    """Load a recipe file, apply `key=value` overrides, resolve model names, validate."""
    path = find_recipe(recipe)
    data, node = read_yaml(path)
    roots = recipe_roots(path)
    sources: Sources = {}
    # Names are resolved before the overrides, so `models.policy.temperature=0` can edit a
    # named model, and again after, for overrides that name a model (`models.judge=gpt-oss-20b`).
    data = resolve_parts(resolve_models(data, roots, sources), roots)
    data = apply_overrides(data, overrides or [])
    data = resolve_parts(resolve_models(data, roots, sources), roots)
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        raise ConfigError(
            describe(err, str(path), node, sources, data=data, overrides=overrides, schema=schema)
        ) from None


def dump(config: BaseModel) -> str:
    """The resolved recipe as YAML (what `--dry-run` prints and a run directory pins)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
