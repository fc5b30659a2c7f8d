"""Promotion between stacks: copy a deployment's pinned artifacts from one stack file to the next.

A deployment moves dev -> staging -> prod by changing stack config, never by hand. The artifacts that move are
what makes the deployment *that* build: the image (by digest: it carries code and environment) and the model
(``modelPath``/``modelVersion`` overrides). Everything else of the target stack (instance counts, isolation, keys,
other endpoints) stays as it is. The stack file is edited with ruamel.yaml's round-trip mode so comments, key order
and quoting survive: the file changes byte for byte only at the promoted keys.

Before writing, the promoted target stack is rendered and checked with the policy pack's rules exactly as
``endpoints plan`` does; a promotion that would add a violation to a mandatory stack is refused, and so is one that
skips a stage the target demands (a prod deployment gets live traffic only after a mirror stage).
"""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from endpoints.errors import SpecError

PREFIX = "ml-endpoints"
OVERRIDES_KEY = f"{PREFIX}:overrides"
# Override keys that pin what a deployment *is*; promotion copies exactly these.
PINNED_KEYS = ("image", "modelPath", "modelVersion")
MAX_MIRROR = 50
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# Indentation styles tried, in order, to find the one that writes the file back unchanged.
_INDENTS = [(m, s, o) for m in (2, 4) for s in (2, 4, 6) for o in (0, 2, 4) if o < s]


@dataclass
class Promotion:
    """The outcome of a promotion (written or not).

    Attributes:
        path: the target stack file.
        original: its text before.
        text: its text after.
        changes: one line per promoted key, ``<dotted key>: <old> -> <new>``.
        notes: advisory findings of the policy rules on the promoted stack (not blocking).
    """

    path: Path
    original: str
    text: str
    changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def prefix_of(endpoint: str) -> str:
    """Dotted place of an endpoint's overrides in a stack file."""
    return f"{OVERRIDES_KEY}.{endpoint}"


def stack_file(repo_root: Path, stack: str) -> Path:
    """``stacks/Pulumi.<stack>.yaml``.

    Raises:
        SpecError: no such file; the message lists the stacks there are.
    """
    path = repo_root / "stacks" / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = sorted(p.name.split(".")[1] for p in (repo_root / "stacks").glob("Pulumi.*.yaml"))
        raise SpecError(f"{path}: no such stack file; stacks: {known}")
    return path


def round_trip_yaml(text: str, source: str) -> tuple[YAML, Any]:
    """Load ``text`` with a round-trip YAML whose indentation writes ``text`` back byte for byte.

    Raises:
        SpecError: the text is not YAML, or no indentation style reproduces it (the file would be reformatted).
    """
    for mapping, sequence, offset in _INDENTS:
        yaml = YAML()
        yaml.preserve_quotes = True
        yaml.width = 4096  # never fold long values (image digests)
        yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
        try:
            data = yaml.load(text)
        except Exception as e:  # ruamel raises several unrelated error types
            raise SpecError(f"{source}: not valid YAML: {e}") from e
        if dump(yaml, data) == text:
            return yaml, data
    raise SpecError(
        f"{source}: cannot edit this file without reformatting it (mixed indentation?); indent mappings by 2 and "
        "sequences by 4 with the dash at 2, as the other stack files do"
    )


def dump(yaml: YAML, data: Any) -> str:
    """Serialise a round-trip document."""
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def _config(data: Any, source: str) -> CommentedMap:
    config = data.get("config") if isinstance(data, Mapping) else None
    if not isinstance(config, CommentedMap):
        raise SpecError(f"{source}: config: missing; a stack file holds a config mapping")
    return config


def _child(parent: MutableMapping[str, Any], key: str) -> CommentedMap:
    """``parent[key]``, created as an empty mapping at the end when missing."""
    value = parent.get(key)
    if not isinstance(value, CommentedMap):
        value = CommentedMap()
        parent[key] = value
    return value


def _find_endpoint(overrides: Mapping[str, Any], deployment: str, endpoint: str | None, source: str) -> str:
    if endpoint is not None:
        return endpoint
    owners = [
        name
        for name, ov in (overrides or {}).items()
        if isinstance(ov, Mapping) and deployment in (ov.get("deployments") or {})
    ]
    if len(owners) == 1:
        return str(owners[0])
    if not owners:
        raise SpecError(
            f"{source}: {OVERRIDES_KEY}: no endpoint overrides deployment {deployment!r}; name it with --endpoint"
        )
    raise SpecError(f"{source}: {OVERRIDES_KEY}: endpoints {sorted(owners)} all have {deployment!r}; pick --endpoint")


def _split_traffic(current: Mapping[str, int], deployment: str, percent: int, where: str) -> dict[str, int]:
    """Give ``deployment`` ``percent`` of live traffic and scale the other live deployments to fill up to 100.

    The rest is shared in proportion to the current weights (largest remainder, ties by name), so the result sums to
    exactly 100.
    """
    others = {k: int(v) for k, v in current.items() if k != deployment and int(v) > 0}
    rest = 100 - percent
    total = sum(others.values())
    if rest > 0 and total == 0:
        raise SpecError(
            f"{where}: traffic: giving {deployment} {percent}% leaves {rest}% with no other live deployment to "
            "take it; live traffic must sum to 0 or 100"
        )
    shares = {k: rest * v / total for k, v in others.items()} if total else {}
    out = {k: int(s) for k, s in shares.items()}
    leftover = rest - sum(out.values())
    for k in sorted(shares, key=lambda k: (-(shares[k] - int(shares[k])), k))[:leftover]:
        out[k] += 1
    result = {k: (percent if k == deployment else out.get(k, 0)) for k in current}
    result.setdefault(deployment, percent)
    return result


def _set(mapping: MutableMapping[str, Any], key: str, value: Any, dotted: str, changes: list[str]) -> None:
    old = mapping.get(key)
    if old == value and key in mapping:
        return
    mapping[key] = value
    changes.append(f"{dotted}: {'(unset)' if old is None else old} -> {value}")


def _unset(mapping: MutableMapping[str, Any], key: str, dotted: str, changes: list[str]) -> None:
    if key in mapping:
        changes.append(f"{dotted}: {mapping[key]} -> (unset)")
        del mapping[key]


def promote(
    repo_root: Path,
    deployment: str,
    source: str,
    target: str,
    *,
    endpoint: str | None = None,
    traffic: int | None = None,
    mirror: int | None = None,
    image: str | None = None,
    check: bool = True,
) -> Promotion:
    """Compute the promotion of ``deployment`` from stack ``source`` to stack ``target`` (nothing is written).

    Args:
        repo_root: the Pulumi project folder (``stacks/`` inside).
        deployment: deployment name.
        source: stack promoted from.
        target: stack promoted to.
        endpoint: endpoint holding the deployment (default: the one endpoint whose overrides name it).
        traffic: live traffic percent to give the deployment in the target (others rescaled to fill 100).
        mirror: percent of live traffic to mirror to the deployment in the target (0 ends mirroring).
        image: image to pin instead of the source's (for a source stack that builds images: its digest).
        check: render the promoted target and refuse new violations where the target enforces (default True).

    Raises:
        SpecError: the promotion is refused; the message says which rule and what to do instead.
    """
    if traffic is not None and mirror is not None:
        raise SpecError("--traffic and --mirror: pick one; a deployment is mirrored first, then given live traffic")
    if traffic is not None and not 0 <= traffic <= 100:
        raise SpecError(f"--traffic: got {traffic}; a live traffic share is 0 to 100")
    if mirror is not None and not 0 <= mirror <= MAX_MIRROR:
        raise SpecError(f"--mirror: got {mirror}; mirror at most {MAX_MIRROR}% (the mirror-limits policy)")
    if source == target:
        raise SpecError(f"--from and --to: both are {source!r}; promote between two stacks")
    _check_order(repo_root, source, target)

    src_path, dst_path = stack_file(repo_root, source), stack_file(repo_root, target)
    _, src_data = round_trip_yaml(src_path.read_text(encoding="utf-8"), str(src_path))
    original = dst_path.read_text(encoding="utf-8")
    yaml, dst_data = round_trip_yaml(original, str(dst_path))

    src_overrides = _config(src_data, str(src_path)).get(OVERRIDES_KEY) or {}
    endpoint = _find_endpoint(src_overrides, deployment, endpoint, str(src_path))
    _check_target_names(repo_root, target, endpoint, deployment)
    src_dep = ((src_overrides.get(endpoint) or {}).get("deployments") or {}).get(deployment) or {}
    where = f"{dst_path}: {OVERRIDES_KEY}.{endpoint}"

    pinned_image = image if image is not None else src_dep.get("image")
    if pinned_image is None:
        raise SpecError(
            f"{src_path}: {OVERRIDES_KEY}.{endpoint}.deployments.{deployment}.image: missing; stack {source} pins no "
            f"image for {deployment} (it builds images on `pulumi up`); pass --image <registry>/<name>@sha256:<digest> "
            f"with the digest it built (`pulumi stack output --stack {source}`)"
        )
    if not _DIGEST.search(str(pinned_image)):
        field_name = (
            "--image" if image is not None else f"{src_path}: {prefix_of(endpoint)}.deployments.{deployment}.image"
        )
        raise SpecError(
            f"{field_name}: got {pinned_image!r}; promotion moves images by digest "
            "(<registry>/<name>@sha256:<64 hex>) so the target runs exactly what was tested"
        )

    config = _config(dst_data, str(dst_path))
    before = None
    if traffic is not None or mirror is not None:
        current = (config.get(OVERRIDES_KEY) or {}).get(endpoint) or {}
        before = _current_split(repo_root, target, endpoint, current)
    environment = _environment(repo_root, target)
    ep = _child(_child(config, OVERRIDES_KEY), endpoint)
    dep = _child(_child(ep, "deployments"), deployment)
    changes: list[str] = []
    prefix = f"{OVERRIDES_KEY}.{endpoint}"
    _set(dep, "image", str(pinned_image), f"{prefix}.deployments.{deployment}.image", changes)
    for key in PINNED_KEYS[1:]:
        dotted = f"{prefix}.deployments.{deployment}.{key}"
        if key in src_dep:
            _set(dep, key, src_dep[key], dotted, changes)
        else:
            _unset(dep, key, dotted, changes)

    if before is not None:
        live, mirrored = before
        if mirror is not None:
            if mirror > 0 and live.get(deployment, 0) > 0:
                raise SpecError(
                    f"{where}.mirrorTraffic.{deployment}: {deployment} takes {live[deployment]}% of live traffic in "
                    f"{target}; mirror only to a deployment with 0 live traffic (the mirror-limits policy)"
                )
            mirror_map = _child(ep, "mirrorTraffic")
            if mirror > 0:
                _set(mirror_map, deployment, mirror, f"{prefix}.mirrorTraffic.{deployment}", changes)
            else:
                _unset(mirror_map, deployment, f"{prefix}.mirrorTraffic.{deployment}", changes)
        if traffic is not None:
            newly_live = traffic > 0 and live.get(deployment, 0) == 0
            if newly_live and environment == "prod" and mirrored.get(deployment, 0) == 0:
                raise SpecError(
                    f"{where}.traffic.{deployment}: refusing {traffic}% of live traffic for {deployment} in {target}: "
                    f"{target} demands a mirror stage first and {deployment} gets no mirrored traffic there; run "
                    f"`endpoints promote {deployment} --from {source} --to {target} --mirror 10` and compare before "
                    "giving it live traffic"
                )
            split = _split_traffic(live, deployment, traffic, where)
            traffic_map = _child(ep, "traffic")
            for name in sorted(split):
                _set(traffic_map, name, split[name], f"{prefix}.traffic.{name}", changes)
            if traffic > 0 and deployment in (ep.get("mirrorTraffic") or {}):
                # Mirroring to a deployment with live traffic scores its requests twice (mirror-limits policy).
                _unset(ep["mirrorTraffic"], deployment, f"{prefix}.mirrorTraffic.{deployment}", changes)
        if "mirrorTraffic" in ep and not ep["mirrorTraffic"]:
            del ep["mirrorTraffic"]

    text = dump(yaml, dst_data)
    promotion = Promotion(path=dst_path, original=original, text=text, changes=changes)
    if check and changes:
        promotion.notes = _check_promoted(repo_root, target, text, str(dst_path))
    return promotion


def set_split(
    repo_root: Path,
    stack: str,
    endpoint: str,
    traffic: Mapping[str, int] | None = None,
    mirror: Mapping[str, int] | None = None,
    *,
    check: bool = True,
) -> Promotion:
    """Compute a new live traffic split and/or mirror shares for ``endpoint`` in ``stack``'s file (nothing written).

    The given maps replace the stack's override whole (a deployment left out gets 0); the result is checked as a
    promotion is: live traffic sums to 0 or 100 over the endpoint's deployments, at most 50% mirrored, never to a
    deployment with live traffic, then the policy pack's rules on the rendered stack.

    Args:
        repo_root: the Pulumi project folder (``stacks/`` inside).
        stack: the stack to change.
        endpoint: the online endpoint.
        traffic: deployment -> live percent (default: unchanged).
        mirror: deployment -> mirrored percent (default: unchanged; ``{}`` ends mirroring).
        check: render the changed stack and refuse new violations where it enforces (default True).

    Raises:
        SpecError: the split is refused; the message names the stack file, the key and the value.
    """
    path = stack_file(repo_root, stack)
    original = path.read_text(encoding="utf-8")
    yaml, data = round_trip_yaml(original, str(path))
    config = _config(data, str(path))
    current = (config.get(OVERRIDES_KEY) or {}).get(endpoint) or {}
    live, mirrored = _current_split(repo_root, stack, endpoint, current)
    new_live = {str(k): int(v) for k, v in (traffic if traffic is not None else live).items()}
    new_mirror = {str(k): int(v) for k, v in (mirror if mirror is not None else mirrored).items() if int(v) > 0}
    where = f"{path}: {prefix_of(endpoint)}"
    deployments = set(_endpoint_project(repo_root, stack, endpoint).deployments)
    for key, values in (("traffic", new_live), ("mirrorTraffic", new_mirror)):
        for name, value in values.items():
            if name not in deployments:
                raise SpecError(f"{where}.{key}.{name}: no such deployment; {endpoint} has {sorted(deployments)}")
            if not 0 <= value <= 100:
                raise SpecError(f"{where}.{key}.{name}: got {value}; a share is 0 to 100")
    total = sum(new_live.values())
    if total not in (0, 100):
        shown = "+".join(str(v) for v in new_live.values())
        raise SpecError(f"{where}.traffic: got {shown}={total}; live traffic must sum to 0 or 100")
    if sum(new_mirror.values()) > MAX_MIRROR:
        raise SpecError(
            f"{where}.mirrorTraffic: got {sum(new_mirror.values())}%; mirror at most {MAX_MIRROR}% "
            "(the mirror-limits policy)"
        )
    for name in new_mirror:
        if new_live.get(name, 0) > 0:
            raise SpecError(
                f"{where}.mirrorTraffic.{name}: {name} takes {new_live[name]}% of live traffic; mirror only to a "
                "deployment with 0 live traffic (the mirror-limits policy)"
            )
    ep = _child(_child(config, OVERRIDES_KEY), endpoint)
    changes: list[str] = []
    prefix = prefix_of(endpoint)
    traffic_map = _child(ep, "traffic")
    for name in sorted(set(new_live) | set(traffic_map) | set(live)):
        _set(traffic_map, name, new_live.get(name, 0), f"{prefix}.traffic.{name}", changes)
    mirror_map = _child(ep, "mirrorTraffic")
    for name in sorted(set(mirror_map) | set(new_mirror)):
        if name in new_mirror:
            _set(mirror_map, name, new_mirror[name], f"{prefix}.mirrorTraffic.{name}", changes)
        else:
            _unset(mirror_map, name, f"{prefix}.mirrorTraffic.{name}", changes)
    if not mirror_map:
        del ep["mirrorTraffic"]
    text = dump(yaml, data)
    result = Promotion(path=path, original=original, text=text, changes=changes)
    if check and changes:
        result.notes = _check_promoted(repo_root, stack, text, str(path))
    return result


ROTATION_KEY = f"{PREFIX}:keyRotation"
ROTATED_KEYS = {"primary": "primary", "secondary": "secondary", "token_signing": "tokenSigning"}


def bump_key_rotation(repo_root: Path, stack: str, endpoint: str, which: str) -> Promotion:
    """Count up ``ml-endpoints:keyRotation.<endpoint>.<which>`` in ``stack``'s file (nothing written).

    The generation is the rotation marker of that key's ``EndpointKey`` (components/endpoint_keys.py): the next
    ``up`` replaces that key alone and updates the endpoint's Secret; the other key is untouched, so callers using it
    never see a 401. Recorded in the stack file, a rotation survives every later ``up`` (CI included).

    Raises:
        SpecError: unknown key name or endpoint, or a generation that is not a number.
    """
    if which not in ROTATED_KEYS:
        raise SpecError(f"key: got {which!r}; choose one of {', '.join(ROTATED_KEYS)}")
    path = stack_file(repo_root, stack)
    _endpoint_project(repo_root, stack, endpoint)  # the endpoint must be one of the stack's
    original = path.read_text(encoding="utf-8")
    yaml, data = round_trip_yaml(original, str(path))
    entry = _child(_child(_config(data, str(path)), ROTATION_KEY), endpoint)
    field_name = ROTATED_KEYS[which]
    old = str(entry.get(field_name, "0"))
    if not old.isdigit():
        raise SpecError(f"{path}: {ROTATION_KEY}.{endpoint}.{field_name}: got {old!r}; a generation is a number")
    changes: list[str] = []
    # Quoted as the other stack files quote numbers that are strings (Pulumi config values are text).
    new = DoubleQuotedScalarString(str(int(old) + 1))
    _set(entry, field_name, new, f"{ROTATION_KEY}.{endpoint}.{field_name}", changes)
    return Promotion(path=path, original=original, text=dump(yaml, data), changes=changes)


_ORDER = {"dev": 0, "staging": 1, "prod": 2}


def _environment(repo_root: Path, stack: str) -> str:
    from components.builders.stack_config import load_stack_config
    from policies.enforcement import settings_for

    values = load_stack_config(repo_root, stack)
    return settings_for(stack, {f"{PREFIX}:{k}": v for k, v in values.items()}).environment


def _check_order(repo_root: Path, source: str, target: str) -> None:
    """Deployments move dev -> staging -> prod one stage at a time (sideways or back is allowed: a rollback)."""
    src, dst = _environment(repo_root, source), _environment(repo_root, target)
    if _ORDER[dst] - _ORDER[src] > 1:
        raise SpecError(
            f"--from {source} --to {target}: skips a stage ({src} -> {dst}); promote to a staging stack first and "
            f"from there to {target}, so {target} only runs what another stack has already run"
        )


def _current_split(
    repo_root: Path, stack: str, endpoint: str, override: Mapping[str, Any]
) -> tuple[dict[str, int], dict[str, int]]:
    """Live traffic and mirror shares of ``endpoint`` in ``stack``: the stack's override, else the endpoint spec's.

    Read without resolving the whole stack, so a deployment the target has never run (no image there yet) can be
    promoted into it.
    """
    traffic, mirror = override.get("traffic"), override.get("mirrorTraffic")
    if traffic is None or mirror is None:
        spec = _endpoint_spec(repo_root, stack, endpoint)
        traffic = spec.traffic if traffic is None else traffic
        mirror = spec.mirror_traffic if mirror is None else mirror
    return {str(k): int(v) for k, v in traffic.items()}, {str(k): int(v) for k, v in mirror.items()}


def _stack_projects(repo_root: Path, stack: str) -> dict[str, Any]:
    """The endpoint projects a stack deploys, by endpoint name."""
    from components.builders.stack_config import load_stack_config, settings_from_config
    from endpoints.project import load_endpoint_project

    path = stack_file(repo_root, stack)
    settings = settings_from_config(load_stack_config(repo_root, stack), str(path))
    projects: dict[str, Any] = {}
    for entry in settings.endpoints:
        folder = repo_root / entry
        project = (
            load_endpoint_project(folder.parent, folder.name)
            if folder.suffix in (".yml", ".yaml")
            else load_endpoint_project(folder)
        )
        projects[project.endpoint.name] = project
    return projects


def _check_target_names(repo_root: Path, stack: str, endpoint: str, deployment: str) -> None:
    """Refuse a promotion into an endpoint or deployment the target stack does not deploy (a typo would be written)."""
    projects = _stack_projects(repo_root, stack)
    if endpoint not in projects:
        raise SpecError(f"--endpoint: got {endpoint!r}; stack {stack} has no such endpoint; known: {sorted(projects)}")
    known = sorted(projects[endpoint].deployments)
    if deployment not in known:
        raise SpecError(f"{deployment}: endpoint {endpoint!r} of stack {stack} has no such deployment; known: {known}")


def _endpoint_spec(repo_root: Path, stack: str, endpoint: str) -> Any:
    return _endpoint_project(repo_root, stack, endpoint).endpoint


def _endpoint_project(repo_root: Path, stack: str, endpoint: str) -> Any:
    """The endpoint folder of ``endpoint`` among the stack's ``ml-endpoints:endpoints``."""
    projects = _stack_projects(repo_root, stack)
    if endpoint in projects:
        return projects[endpoint]
    path = stack_file(repo_root, stack)
    raise SpecError(f"{path}: {PREFIX}:endpoints: stack {stack} has no endpoint {endpoint!r}")


def _check_promoted(repo_root: Path, stack: str, text: str, source: str) -> list[str]:
    """Plan the target with the promoted text; refuse new violations where the target enforces them.

    Returns:
        Advisory violations introduced by the promotion (for the user to read; they do not block).
    """
    from endpoints.app.plan import plan_stack

    try:
        before_violations = {(v.policy, v.ref(), v.message) for v in plan_stack(repo_root, stack).violations}
    except SpecError:
        before_violations = set()  # the target does not render yet (e.g. it lacks this very image): all is new
    # The plan reads stacks/Pulumi.<stack>.yaml under a project root; give it one where only that file differs.
    with tempfile.TemporaryDirectory(prefix="promote-") as tmp:
        shadow = Path(tmp)
        (shadow / "stacks").mkdir()
        (shadow / "stacks" / f"Pulumi.{stack}.yaml").write_text(text, encoding="utf-8")
        for child in repo_root.iterdir():
            if child.name != "stacks":
                (shadow / child.name).symlink_to(child)
        after = plan_stack(shadow, stack)
    if after.schema_problems:
        lines = "; ".join(f"{p.ref}: {p.message}" for p in after.schema_problems)
        raise SpecError(f"{source}: the promoted stack renders objects the API server rejects: {lines}")
    new = [v for v in after.violations if (v.policy, v.ref(), v.message) not in before_violations]
    messages = [f"{v.policy} {v.ref()}: {v.message}" for v in new]
    if new and after.level == "mandatory":
        raise SpecError(
            f"{source}: refusing the promotion: stack {stack} enforces its policies and the promotion breaks "
            + "; ".join(messages)
        )
    return messages
