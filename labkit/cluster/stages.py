"""labkit's KWOK Stages, rendered with the image catalog: what the simulated kubelet writes, and when.

The Stages live in ``labkit/data/stages/*.yaml`` (their README says every rule). They are not applied as they
are: this module fills in two kinds of markers first.

- the image catalog (``labkit/data/images.yaml``, plus ``$LABKIT_IMAGES``): the jq programs get it as
  ``def catalog: {...};``, the Go templates as a few variables (``{{/* labkit:catalog */}}``);
- shared Go-template pieces (``{{/* labkit:NAME */}}``, :data:`SNIPPETS`): a KWOK step can render one object, and
  every event the kubelet records is one ``apply`` step of a core/v1 Event, so the Event's body, the choice of
  container and the image reference's normalisation are written once here instead of forty times there.

``python -m labkit.cluster.stages`` prints the rendered Stages (``| kubectl apply -f -`` on a running lab).
``labkit up`` applies them through :func:`stage_documents`.

Imports stay light: yaml is loaded inside the functions that need it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ManifestError
from ..paths import data_file

IMAGES_ENV = "LABKIT_IMAGES"
DEFAULT_SIZE_BYTES = 30_000_000
DEFAULT_MISSING_PATTERN = "does-not-exist|nonexistent"
USERLANDS = ("gnu", "busybox")
# Where a bare program name is looked up (runc searches the image's PATH; these are every image's PATH dirs).
PATH_DIRS = ("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")
LIBRARY = "docker.io/library/"
# Written on every pod by the embedded kubelet's checks (labkit.sim.kubelet): `passed` (the Stages run it) or `held`
# (that process walks it). The Stages act only on pods that carry it: see gate() below.
KUBELET_ANNOTATION = "sim.labkit.io/kubelet"
# Written with it when the first container declares more memory than its limit (labkit.sim.declared): its name.
OOM_ANNOTATION = "sim.labkit.io/oom-killed"
# Written with it when the runtime will run the first container's program for real (labkit.sim.runtime): `real`.
# Then that container ends only when its process does: the runtime writes EXIT_ANNOTATION, "<startedAt> <code>".
RUNTIME_ANNOTATION = "sim.labkit.io/runtime"
EXIT_ANNOTATION = "sim.labkit.io/exit"
# Pod stages that act whatever the checks said: a deleted pod stops and goes.
UNGATED_STAGES = ("labkit-pod-stop", "labkit-pod-terminal", "labkit-pod-delete")

# --- image references, normalised as the kubelet's runtime does (docker's reference grammar)


@dataclass(frozen=True)
class ImageRef:
    """A normalised image reference: ``nginx`` is docker.io/library/nginx:latest."""

    repo: str
    tag: str | None
    digest: str | None

    @property
    def ref(self) -> str:
        return self.repo + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def normalise(image: str) -> ImageRef:
    """Normalise an image reference the way the kubelet's runtime resolves it.

    The first path component is a registry when it has a ``.`` or ``:``, is ``localhost`` or has upper case;
    otherwise the image is on Docker Hub (``docker.io``), whose one-component names live under ``library/``.
    No tag and no digest means ``:latest``.
    """
    name, _, digest = image.partition("@")
    tag = None
    m = re.fullmatch(r"(.*?):([^:/]+)", name)
    if m:
        name, tag = m.group(1), m.group(2)
    first, slash, _rest = name.partition("/")
    if not (slash and (re.search(r"[.:]", first) or first == "localhost" or first != first.lower())):
        name = f"docker.io/{name}"
    if name.startswith("index.docker.io/"):
        name = "docker.io/" + name.removeprefix("index.docker.io/")
    if re.fullmatch(r"docker\.io/[^/]+", name):
        name = "docker.io/library/" + name.removeprefix("docker.io/")
    if tag is None and not digest:
        tag = "latest"
    return ImageRef(name, tag, digest or None)


def pull_error(catalog: Catalog, image: str) -> str:
    """What containerd answers for an image that cannot be pulled (the Python twin of SNIPPETS["pull-error"])."""
    ref = normalise(image)
    host = ref.repo.split("/", 1)[0]
    if catalog.state(image) == "no-host":
        path = ref.repo.removeprefix(host + "/")
        url = f"https://{host}/v2/{path}/manifests/{ref.digest or ref.tag}"
        return (f'rpc error: code = Unknown desc = failed to pull and unpack image "{ref.ref}": failed to resolve '
                f'reference "{ref.ref}": failed to do request: Head "{url}": dial tcp: lookup {host}: no such host')
    if host == "docker.io" and catalog.state(image) == "no-repo":
        return (f'failed to pull and unpack image "{ref.ref}": failed to resolve image: pull access denied, repository '
                "does not exist or may require authorization: server message: insufficient_scope: authorization failed")
    return (f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref.ref}": failed to resolve image: '
            f"{ref.ref}: not found")


def gate(doc: dict[str, Any]) -> dict[str, Any]:
    """Make a pod Stage wait for the kubelet's checks: create for any verdict, the rest only for ``passed``."""
    spec = doc.get("spec") or {}
    name = (doc.get("metadata") or {}).get("name")
    if doc.get("kind") != "Stage" or (spec.get("resourceRef") or {}).get("kind") != "Pod" or name in UNGATED_STAGES:
        return doc
    values = ["passed", "held"] if name == "labkit-pod-create" else ["passed"]
    check = {"jq": {"key": f'.metadata.annotations["{KUBELET_ANNOTATION}"]', "operator": "In", "values": values}}
    selector = spec.setdefault("selector", {})
    selector["matchExpressions"] = [*(selector.get("matchExpressions") or []), check]
    return doc


# --- the catalog


def expand_braces(word: str) -> list[str]:
    """Bash-style brace expansion: ``1.{0..2}`` -> 1.0 1.1 1.2, ``{a,b}-x`` -> a-x b-x, ``{01..03}`` keeps zeros."""
    m = re.search(r"\{([^{}]*)\}", word)
    if not m:
        return [word]
    body, head, tail = m.group(1), word[:m.start()], word[m.end():]
    rng = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", body)
    if rng:
        lo, hi = int(rng.group(1)), int(rng.group(2))
        width = len(rng.group(1)) if rng.group(1).startswith("0") and len(rng.group(1)) > 1 else 0
        step = 1 if hi >= lo else -1
        parts = [str(n).zfill(width) for n in range(lo, hi + step, step)]
    elif "," in body:
        parts = body.split(",")
    else:  # not an expansion: keep the braces, as bash does
        return [head + "{" + body + "}" + t for t in expand_braces(tail)]
    return [x for p in parts for x in expand_braces(head + p + tail)]


def _words(value: Any, *, what: str) -> list[str]:
    """Tags or variants: one string of blank-separated words (brace-expanded), or a list of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split()
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        # YAML reads 1.20 as the number 1.2: a tag must be a string, or it silently changes.
        raise ManifestError(f"{what} must be a string of tags or a list of quoted strings, not {value!r}",
                            fix='write them as one string, e.g. `tags: "1.20 1.21"`')
    return [x for w in items for x in expand_braces(w)]


@dataclass
class Repository:
    tags: set[str] = field(default_factory=set)
    variants: list[str] = field(default_factory=list)
    size_bytes: int | None = None
    userland: str = "gnu"
    base: str | None = None
    executables: set[str] = field(default_factory=set)
    # What the image prints when it starts: (stream, text with {date} and {tag}); files it ships (path -> text);
    # how it answers on its port (labkit.sim.responder: nginx, httpd, hpa-example, agnhost).
    start_log: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    serves: str | None = None
    # NVIDIA's CUDA images set NVIDIA_REQUIRE_CUDA=cuda>=X.Y, X.Y being the CUDA of their tag: this pattern's group.
    cuda_from_tag: str | None = None

    def has_tag(self, tag: str) -> bool:
        if tag in self.tags:
            return True
        # `<tag>-<variant>` for a listed tag (not `latest-alpine`: Docker Hub has none), or the bare variant.
        return any(tag == v or (tag.endswith("-" + v) and tag[:-len(v) - 1] in self.tags - {"latest"})
                   for v in self.variants)


@dataclass
class Catalog:
    """Which images exist for the simulated kubelet (see labkit/data/images.yaml)."""

    repositories: dict[str, Repository] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    missing_pattern: str = DEFAULT_MISSING_PATTERN
    preloaded: list[str] = field(default_factory=list)
    default_size: int = DEFAULT_SIZE_BYTES
    registry_hosts: list[str] = field(default_factory=list)
    official: set[str] = field(default_factory=set)
    bases: dict[str, set[str]] = field(default_factory=dict)

    @property
    def hosts_pattern(self) -> str:
        """One anchored regular expression for every registry host that answers ("" when none is listed)."""
        return "^(" + "|".join(self.registry_hosts) + ")$" if self.registry_hosts else ""

    def host_known(self, repo: str) -> bool:
        host = repo.split("/", 1)[0]
        return not self.registry_hosts or re.fullmatch(self.hosts_pattern[1:-1], host) is not None

    def state(self, image: str) -> str:
        """``ok``, ``no-host`` (the registry host does not resolve), ``no-repo`` (the repository does not exist)
        or ``no-tag`` (it has no such tag)."""
        ref = normalise(image)
        pattern = re.compile(self.missing_pattern) if self.missing_pattern else None
        if not self.host_known(ref.repo):
            return "no-host"
        if ref.repo in self.missing or (pattern and pattern.search(ref.repo)):
            return "no-repo"
        if (self.official and ref.repo.startswith(LIBRARY) and ref.repo not in self.repositories
                and ref.repo.removeprefix(LIBRARY) not in self.official):
            return "no-repo"
        if pattern and ref.tag and pattern.search(ref.tag):
            return "no-tag"
        repo = self.repositories.get(ref.repo)
        if repo is None or ref.tag is None:
            return "ok"
        return "ok" if repo.has_tag(ref.tag) else "no-tag"

    def exists(self, image: str) -> bool:
        return self.state(image) == "ok"

    def size(self, image: str) -> int:
        repo = self.repositories.get(normalise(image).repo)
        return repo.size_bytes if repo and repo.size_bytes else self.default_size

    def pull_ms(self, image: str) -> int:
        """The simulated pull time: 0.4 s plus 1 s per 200 MB, at most 1.6 s (real pulls of big images take minutes)."""
        return min(1600, 400 + self.size(image) // 200_000)

    def programs(self, image: str) -> set[str] | None:
        """The executables on the image's PATH (and absolute paths it declares); None when the catalog does not say.

        An ``-alpine`` variant of a Debian-based image has Alpine's userland, not Debian's."""
        ref = normalise(image)
        repo = self.repositories.get(ref.repo)
        if repo is None or (repo.base is None and not repo.executables):
            return None
        base = repo.base
        if base == "debian" and "alpine" in (ref.tag or ""):
            base = "busybox"
        return set(self.bases.get(base, set()) if base else set()) | repo.executables

    def has_program(self, image: str, program: str, mounts: Iterable[str] = ()) -> bool | None:
        """Whether runc finds ``program`` (a container's command[0]) in the image; None when the catalog cannot say.

        A relative path (``./run.sh``) depends on the working directory the catalog does not know: None."""
        programs = self.programs(image)
        if programs is None or ("/" in program and not program.startswith("/")):
            return None
        if not program.startswith("/"):
            return program in programs
        if program in programs or any(program.startswith(m.rstrip("/") + "/") for m in mounts if m):
            return True
        folder, _, name = program.rpartition("/")
        return folder in PATH_DIRS and name in programs

    def image_env(self, image: str) -> dict[str, str]:
        """The environment the image sets that the lab acts on (today: a CUDA image's ``NVIDIA_REQUIRE_CUDA``)."""
        ref = normalise(image)
        repo = self.repositories.get(ref.repo)
        if repo is None or not repo.cuda_from_tag or not ref.tag:
            return {}
        match = re.search(repo.cuda_from_tag, ref.tag)
        return {"NVIDIA_REQUIRE_CUDA": f"cuda>={match.group(1)}"} if match else {}

    def userland(self, image: str) -> str:
        ref = normalise(image)
        repo = self.repositories.get(ref.repo)
        if repo and repo.userland == "busybox" or "alpine" in ref.ref or "busybox" in ref.repo:
            return "busybox"
        return "gnu"

    def merge(self, data: dict[str, Any], *, source: str) -> None:
        """Add one catalog file's content: its repositories and tags are added to these."""
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: the image catalog must be a mapping", fix="see labkit/data/images.yaml")
        keys = {"defaults", "missing_pattern", "missing", "preloaded", "repositories", "registry_hosts", "official",
                "bases"}
        unknown = set(data) - keys
        if unknown:
            raise ManifestError(f"{source}: unknown catalog keys {sorted(unknown)}",
                                fix=f"the keys are {', '.join(sorted(keys))}")
        for host in data.get("registry_hosts") or []:
            try:
                re.compile(str(host))
            except re.error as exc:
                raise ManifestError(f"{source}: registry host {host!r} is not a regular expression: {exc}",
                                    fix=r"escape dots: registry\.example\.com") from exc
            if str(host) not in self.registry_hosts:
                self.registry_hosts.append(str(host))
        self.official |= set(_words(data.get("official"), what=f"{source}: official"))
        for base, words in (data.get("bases") or {}).items():
            self.bases.setdefault(str(base), set()).update(_words(words, what=f"{source}: bases.{base}"))
        defaults = data.get("defaults") or {}
        if "size_bytes" in defaults:
            self.default_size = int(defaults["size_bytes"])
        if "missing_pattern" in data:
            pattern = str(data["missing_pattern"] or "")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ManifestError(f"{source}: missing_pattern is not a regular expression: {exc}",
                                    fix="use Go/RE2 syntax, e.g. does-not-exist|nonexistent") from exc
            self.missing_pattern = pattern
        self.missing |= {normalise(str(r)).repo for r in data.get("missing") or []}
        for image in data.get("preloaded") or []:
            ref = normalise(str(image)).ref
            if ref not in self.preloaded:
                self.preloaded.append(ref)
        for name, spec in (data.get("repositories") or {}).items():
            spec = spec or {}
            repo_name = normalise(str(name)).repo
            if normalise(str(name)).tag != "latest" or "@" in str(name):
                raise ManifestError(f"{source}: repository {name!r} must be named without a tag or digest",
                                    fix="list its tags under `tags:`")
            repo = self.repositories.setdefault(repo_name, Repository())
            repo.tags |= set(_words(spec.get("tags"), what=f"{source}: {name}.tags"))
            repo.variants += [v for v in _words(spec.get("variants"), what=f"{source}: {name}.variants")
                              if v not in repo.variants]
            repo.executables |= set(_words(spec.get("executables"), what=f"{source}: {name}.executables"))
            if spec.get("base") is not None:
                if str(spec["base"]) not in self.bases:
                    raise ManifestError(f"{source}: {name}.base {spec['base']!r} is not one of the catalog's bases",
                                        fix=f"one of {sorted(self.bases)}, or add it under `bases:`")
                repo.base = str(spec["base"])
            for line in spec.get("start_log") or []:
                stream, sep, text = str(line).partition(": ")
                if not sep or stream not in ("stdout", "stderr"):
                    raise ManifestError(f"{source}: {name}.start_log line {line!r} must start with stdout: or stderr:",
                                        fix='e.g. "stdout: /docker-entrypoint.sh: Configuration complete"')
                repo.start_log.append((stream, text))
            repo.files.update({str(k): str(v) for k, v in (spec.get("files") or {}).items()})
            if spec.get("serves") is not None:
                repo.serves = str(spec["serves"])
            if spec.get("cuda_from_tag") is not None:
                pattern = str(spec["cuda_from_tag"])
                if re.compile(pattern).groups != 1:
                    raise ManifestError(f"{source}: {name}.cuda_from_tag {pattern!r} needs one group, the CUDA version",
                                        fix=r"e.g. '^(\d+\.\d+)' for a tag such as 12.4.1-base-ubuntu22.04")
                repo.cuda_from_tag = pattern
            if spec.get("size_bytes") is not None:
                repo.size_bytes = int(spec["size_bytes"])
            if spec.get("userland") is not None:
                if spec["userland"] not in USERLANDS:
                    raise ManifestError(f"{source}: {name}.userland must be one of {USERLANDS}",
                                        fix="gnu for debian/ubuntu-based images, busybox for busybox/alpine ones")
                repo.userland = spec["userland"]

    def for_jq(self) -> dict[str, Any]:
        """The catalog as the jq programs read it (maps for lookups)."""
        return {"repos": {name: {"tags": {t: True for t in sorted(r.tags)}, "variants": r.variants,
                                 **({"size": r.size_bytes} if r.size_bytes else {})}
                          for name, r in sorted(self.repositories.items())},
                "missing": {r: True for r in sorted(self.missing)},
                "preloaded": {r: True for r in self.preloaded},
                "pattern": self.missing_pattern or None,
                "hosts": self.hosts_pattern or None,
                "official": {n: True for n in sorted(self.official)},
                "default_size": self.default_size}

    def for_gotpl(self) -> str:
        """The catalog as Go-template variables: sizes, missing repositories, busybox userlands, preloaded images."""
        def q(s: str) -> str:
            return json.dumps(s)
        sizes = " ".join(f"{q(n)} {r.size_bytes}" for n, r in sorted(self.repositories.items()) if r.size_bytes)
        busybox = " ".join(q(n) for n, r in sorted(self.repositories.items()) if r.userland == "busybox")
        missing = " ".join(q(n) for n in sorted(self.missing))
        preloaded = " ".join(q(n) for n in self.preloaded)
        official = " ".join(q(LIBRARY + n) for n in sorted(self.official | {r.removeprefix(LIBRARY)
                                                                          for r in self.repositories
                                                                          if r.startswith(LIBRARY)}))
        return ("{{- $hostsPattern := " + q(self.hosts_pattern or ".") + " }}"
                "{{- $officialRepos := list " + official + " }}"
                "{{- $sizes := dict " + sizes + " }}"
                "{{- $defaultSize := " + str(self.default_size) + " }}"
                "{{- $busyboxRepos := list " + busybox + " }}"
                "{{- $missingRepos := list " + missing + " }}"
                "{{- $missingPattern := " + q(self.missing_pattern or "$^") + " }}"
                "{{- $preloaded := list " + preloaded + " }}")


def catalog_files() -> list[Path]:
    """The shipped catalog, then the learner's own (``$LABKIT_IMAGES``) when set."""
    files = [data_file("images.yaml")]
    extra = os.environ.get(IMAGES_ENV)
    if extra:
        files.append(Path(extra).expanduser())
    return files


def load_catalog(paths: list[Path] | None = None) -> Catalog:
    import yaml

    catalog = Catalog()
    for path in paths or catalog_files():
        try:
            text = path.read_text()
        except OSError as exc:
            raise ManifestError(f"cannot read the image catalog {path}: {exc}",
                                fix=f"fix or unset {IMAGES_ENV}") from exc
        catalog.merge(yaml.safe_load(text) or {}, source=str(path))
    return catalog


# --- Go-template pieces shared by the stages. Each reads and sets the variables its comment names.

SNIPPETS: dict[str, str] = {}

# The catalog (filled in by Catalog.for_gotpl).
SNIPPETS["catalog"] = ""

# Pull phase: the container the kubelet handles next: the first still being created, else the first whose
# pull back-off is over. Sets $pod $now $i (index) $c (spec) $s (status) $img.
SNIPPETS["pick-pull"] = r"""
{{- $pod := . }}{{ $now := Now }}{{ $i := -1 }}
{{- range $j, $st := $pod.status.containerStatuses }}
{{- if and (lt $i 0) (eq (toString $st.state.waiting.reason) "ContainerCreating") }}{{ $i = $j }}{{ end }}{{ end }}
{{- if lt $i 0 }}{{ range $j, $st := $pod.status.containerStatuses }}
{{- if and (lt $i 0) (eq (toString $st.state.waiting.reason) "ImagePullBackOff") }}{{ $i = $j }}{{ end }}{{ end }}
{{- end }}
{{- $c := index $pod.spec.containers $i }}{{ $s := index $pod.status.containerStatuses $i }}{{ $img := $c.image }}
"""

# Pull phase: the first container whose pull just failed. Same variables as pick-pull.
SNIPPETS["pick-failed"] = r"""
{{- $pod := . }}{{ $now := Now }}{{ $i := -1 }}
{{- range $j, $st := $pod.status.containerStatuses }}
{{- if and (lt $i 0) (eq (toString $st.state.waiting.reason) "ErrImagePull") }}{{ $i = $j }}{{ end }}{{ end }}
{{- $c := index $pod.spec.containers $i }}{{ $s := index $pod.status.containerStatuses $i }}{{ $img := $c.image }}
"""

# Running pod: the probe machine decides on the first container. Same variables as pick-pull.
SNIPPETS["first"] = r"""
{{- $pod := . }}{{ $now := Now }}{{ $i := 0 }}
{{- $c := index $pod.spec.containers 0 }}{{ $s := index $pod.status.containerStatuses 0 }}{{ $img := $c.image }}
"""

# $img -> $repo $tag $digest $ref: the kubelet's normalisation (docker.io/library/, :latest).
SNIPPETS["image-ref"] = r"""
{{- $name := $img }}{{ $digest := "" }}{{ $tag := "" }}
{{- if contains "@" $name }}{{ $digest = regexReplaceAll "^[^@]*@" $name "" }}
{{- $name = regexReplaceAll "@.*$" $name "" }}{{ end }}
{{- if regexMatch ":[^:/]+$" $name }}{{ $tag = regexReplaceAll "^.*:" $name "" }}
{{- $name = regexReplaceAll ":[^:/]+$" $name "" }}{{ end }}
{{- $host0 := regexReplaceAll "/.*$" $name "" }}
{{- $isHost := or (contains "." $host0) (contains ":" $host0) (eq $host0 "localhost") (ne $host0 (lower $host0)) }}
{{- if not (and (contains "/" $name) $isHost) }}
{{- $name = printf "docker.io/%s" $name }}{{ end }}
{{- $name = regexReplaceAll "^index\\.docker\\.io/" $name "docker.io/" }}
{{- if regexMatch "^docker\\.io/[^/]+$" $name }}
{{- $name = printf "docker.io/library/%s" (trimPrefix "docker.io/" $name) }}{{ end }}
{{- if and (eq $tag "") (eq $digest "") }}{{ $tag = "latest" }}{{ end }}
{{- $repo := $name }}{{ $ref := $repo }}
{{- if $tag }}{{ $ref = printf "%s:%s" $ref $tag }}{{ end }}{{ if $digest }}{{ $ref = printf "%s@%s" $ref $digest }}
{{- end }}
{{- $imageID := printf "%s@sha256:%s" $repo (sha256sum $ref) }}{{ if $digest }}
{{- $imageID = printf "%s@%s" $repo $digest }}{{ end }}
"""

# $repo -> $pullMs $pullDur: the simulated pull time, as Go prints a duration (760ms, 1.6s). Needs catalog.
SNIPPETS["pull-time"] = r"""
{{- $size := $defaultSize }}{{ if hasKey $sizes $repo }}{{ $size = get $sizes $repo }}{{ end }}
{{- $pullMs := min 1600 (add 400 (div $size 200000)) }}{{ $pullDur := printf "%dms" $pullMs }}
{{- if ge $pullMs 1000 }}
{{- $pullDur = printf "%ss" (regexReplaceAll "\\.?0+$" (printf "%d.%03d" (div $pullMs 1000) (mod $pullMs 1000)) "") }}
{{- end }}
"""

# $pod -> $k: which pull attempt this is (0 = the first). Attempts are 1 s after startTime, then after the
# kubelet's back-off: 10 s, doubling, at most 300 s (the same schedule as the jq program's).
SNIPPETS["pull-attempt"] = r"""
{{- $startMs := (toDate "2006-01-02T15:04:05Z07:00" $pod.status.startTime).UnixMilli }}
{{- $elapsed := sub (add (now).UnixMilli 500) (add $startMs 1000) }}
{{- $k := 0 }}{{ $b := 0 }}{{ $step := 10000 }}
{{- range until 64 }}{{ if ge $elapsed (add $b $step) }}{{ $b = add $b $step }}{{ $k = add1 $k }}
{{- $step = min 300000 (mul $step 2) }}{{ end }}{{ end }}
"""

# $img $repo $ref -> $pullErr: what containerd answers for an image that does not exist. Needs catalog.
SNIPPETS["pull-error"] = r"""
{{- $pullErr := printf "%s %s" "rpc error: code = NotFound desc = failed to pull and unpack image"
      (printf "%q: failed to resolve image: %s: not found" $ref $ref) }}
{{- $notOfficial := and (hasPrefix "docker.io/library/" $repo) (gt (len $officialRepos) 0)
      (not (has $repo $officialRepos)) }}
{{- if and (hasPrefix "docker.io/" $repo)
      (or (has $repo $missingRepos) (regexMatch $missingPattern $repo) $notOfficial) }}
{{- $pullErr = printf "failed to pull and unpack image %q: failed to resolve image: %s %s" $ref
      "pull access denied, repository does not exist or may require authorization:"
      "server message: insufficient_scope: authorization failed" }}
{{- end }}
{{- $host := regexReplaceAll "/.*$" $repo "" }}
{{- if not (regexMatch $hostsPattern $host) }}
{{- $manifest := $tag }}{{ if $digest }}{{ $manifest = $digest }}{{ end }}
{{- $url := printf "https://%s/v2/%s/manifests/%s" $host (trimPrefix (printf "%s/" $host) $repo) $manifest }}
{{- $pullErr = printf "%s %q: failed to resolve reference %q: failed to do request: Head %q: dial tcp: lookup %s: %s"
      "rpc error: code = Unknown desc = failed to pull and unpack image" $ref $ref $url $host "no such host" }}
{{- end }}
"""

# $s -> $backoff: the crash-loop back-off for this restart (10 s x 2^restartCount, at most 5 minutes).
SNIPPETS["crash-backoff"] = r"""
{{- $n := int $s.restartCount }}{{ $backoff := "5m0s" }}
{{- if lt $n 5 }}{{ $backoff = index (list "10s" "20s" "40s" "1m20s" "2m40s") $n }}{{ end }}
"""

# $base (a map) and $over (a dict) -> $st: a copy of $base with $over's keys set. (sprig's merge keeps the
# destination's value unless it is empty, and false is empty: merge cannot turn `ready` false.)
SNIPPETS["overlay"] = r"""
{{- $st := deepCopy $base }}{{ range $k, $v := $over }}{{ $_ := set $st $k $v }}{{ end }}
"""

# $pod $c $img $probe -> $out: what the failing probe prints, as the kubelet's prober reports it.
SNIPPETS["probe-output"] = r"""
{{/* labkit:image-ref */}}
{{- $podIP := toString $pod.status.podIP }}
{{- $web := regexMatch "(^|/)(nginx|httpd)(:|@|$)" $c.image }}
{{- $agnLive := and (contains "agnhost" $c.image) (eq (toString (first (default (list) $c.args))) "liveness") }}
{{- $listen := list }}{{ $anyPort := false }}
{{- if $web }}{{ $listen = list 80 }}{{ else if $agnLive }}{{ $listen = list 8080 }}
{{- else if $c.ports }}{{ range $c.ports }}{{ $listen = append $listen (int .containerPort) }}{{ end }}
{{- else }}{{ $anyPort = true }}{{ end }}
{{- $pp := "" }}
{{- if $probe.httpGet }}{{ $pp = $probe.httpGet.port }}{{ else if $probe.tcpSocket }}{{ $pp = $probe.tcpSocket.port }}
{{- else if $probe.grpc }}{{ $pp = $probe.grpc.port }}{{ end }}
{{- $port := -1 }}
{{- if regexMatch "^[0-9]+$" (toString $pp) }}{{ $port = atoi (toString $pp) }}
{{- else }}{{ range $c.ports }}{{ if eq (toString .name) (toString $pp) }}{{ $port = int .containerPort }}{{ end }}
{{- end }}{{ end }}
{{- $open := and (ge $port 0) (or $anyPort (has $port $listen)) }}
{{- $out := "" }}
{{- if $probe.exec }}
  {{- $cmd := join " " $probe.exec.command }}
  {{- $file := regexReplaceAll "^(cat|ls) +" (regexFind "(cat|ls) +[^ ;&|]+" $cmd) "" }}
  {{- $bb := or (has $repo $busyboxRepos) (contains "alpine" $ref) (contains "busybox" $repo) }}
  {{- if regexMatch "(^|[ ;&|])cat +[^ ;&|]" $cmd }}
    {{- if $bb }}{{ $out = printf "cat: can't open '%s': No such file or directory\n" $file }}{{ else }}
{{- $out = printf "cat: %s: No such file or directory\n" $file }}{{ end }}
  {{- else if regexMatch "(^|[ ;&|])ls +[^ ;&|]" $cmd }}
    {{- if $bb }}{{ $out = printf "ls: %s: No such file or directory\n" $file }}{{ else }}
{{- $out = printf "ls: cannot access '%s': No such file or directory\n" $file }}{{ end }}
  {{- end }}
{{- else if $probe.httpGet }}
  {{- $host := default $podIP $probe.httpGet.host }}
  {{- if not $open }}
    {{- $scheme := lower (default "HTTP" $probe.httpGet.scheme) }}
    {{- $url := printf "%s://%s:%d%s" $scheme $host $port (default "" $probe.httpGet.path) }}
    {{- $out = printf "Get %q: dial tcp %s:%d: connect: connection refused" $url $host $port }}
  {{- else if $agnLive }}{{ $out = "HTTP probe failed with statuscode: 500" }}
  {{- else }}{{ $out = "HTTP probe failed with statuscode: 404" }}{{ end }}
{{- else if $probe.tcpSocket }}
  {{- $out = printf "dial tcp %s:%d: connect: connection refused" (default $podIP $probe.tcpSocket.host) $port }}
{{- else if $probe.grpc }}
  {{- $out = printf "%s \"transport: Error while dialing: dial tcp %s:%d: connect: connection refused\""
        "error: health rpc probe failed: rpc error: code = Unavailable desc = connection error: desc =" $podIP $port }}
{{- end }}
"""

# The pod's Ready and ContainersReady conditions, False (a patch merges conditions by type).
SNIPPETS["not-ready"] = r"""
conditions:
- type: Ready
  status: "False"
  reason: ContainersNotReady
  message: 'containers with unready status: [{{ range $j, $cc := $pod.spec.containers }}{{ if $j }}{{ end }}
{{- $cc.name }}{{ end }}]'
  lastTransitionTime: {{ $now | Quote }}
- type: ContainersReady
  status: "False"
  reason: ContainersNotReady
  message: 'containers with unready status: [{{ range $j, $cc := $pod.spec.containers }}{{ if $j }}{{ end }}
{{- $cc.name }}{{ end }}]'
  lastTransitionTime: {{ $now | Quote }}
"""

# $c -> $code $why: the exit code of a command that ends with `exit N` (`false`: 1; one that just ends: 0) and the
# reason the kubelet gives it (Error, or Completed for 0).
SNIPPETS["exit-code"] = r"""
{{- $cmdline := join " " (concat (or $c.command (list)) (or $c.args (list))) }}
{{- $code := 0 }}
{{- if regexMatch "exit +[1-9]" $cmdline }}
{{- $code = atoi (regexFind "[0-9]+" (regexFind "exit +[1-9][0-9]*" $cmdline)) }}
{{- else if regexMatch "^(/bin/)?false$" $cmdline }}{{ $code = 1 }}{{ end }}
{{- /* a process that ran for real (labkit.sim.runtime): its own exit code */}}
{{- $exit := splitList " " (index (default (dict) $pod.metadata.annotations) "sim.labkit.io/exit" | toString) }}
{{- $first := index (default (list) $pod.status.containerStatuses) 0 }}
{{- if and (eq (len $exit) 2) $first.state.running }}
{{- if eq (index $exit 0) (toString $first.state.running.startedAt) }}{{ $code = atoi (index $exit 1) }}{{ end }}
{{- end }}
{{- $why := "Error" }}{{ if eq $code 0 }}{{ $why = "Completed" }}{{ end }}
{{- if eq (index (default (dict) $pod.metadata.annotations) "sim.labkit.io/oom-killed" | toString) $c.name }}
{{- $code = 137 }}{{ $why = "OOMKilled" }}{{ end }}
{{- /* the termination message: what the command echoes into terminationMessagePath; with FallbackToLogsOnError and
       an error, what it echoes to its log */}}
{{- $messageFile := default "/dev/termination-log" $c.terminationMessagePath }}
{{- $message := "" }}
{{- range regexFindAll (printf "echo +[^;&|>]*> *%s" $messageFile) $cmdline -1 }}
{{- $said := regexReplaceAll " *>.*$" (regexReplaceAll "^echo +" . "") "" }}
{{- $message = printf "%s%s\n" $message (trimAll "\"'" $said) }}
{{- end }}
{{- if and (eq $message "") (ne $code 0) (eq (toString $c.terminationMessagePolicy) "FallbackToLogsOnError") }}
{{- range regexFindAll "echo +[^;&|>]+(;|&|[|]|$)" $cmdline -1 }}
{{- $said := regexReplaceAll " *[;&|]*$" (regexReplaceAll "^echo +" . "") "" }}
{{- $message = printf "%s%s\n" $message (trimAll "\"'" $said) }}
{{- end }}
{{- end }}
"""

# $probe $kind $out -> the Unhealthy event of a probe that has failed failureThreshold times in a row (one event,
# its count the failures: how the recorder aggregates the prober's identical events).
SNIPPETS["failure-streak"] = r"""
{{- $F := int (default 3 $probe.failureThreshold) }}{{ $T := int (default 10 $probe.periodSeconds) }}
{{- $etype := "Warning" }}{{ $reason := "Unhealthy" }}{{ $msg := printf "%s probe failed: %s" $kind $out }}
{{- $count := $F }}{{ $last := $now }}
{{- $first := now | dateModify (printf "-%ds" (mul (sub $F 1) $T)) | date "2006-01-02T15:04:05Z07:00" }}
"""

# $probe $kind $out $s -> the Unhealthy event of the failures before a probe's first success (it succeeds now).
SNIPPETS["failures-so-far"] = r"""
{{- $T := int (default 10 $probe.periodSeconds) }}{{ $d := int (default 0 $probe.initialDelaySeconds) }}
{{- $t0 := (toDate "2006-01-02T15:04:05Z07:00" $s.state.running.startedAt).Unix }}
{{- $etype := "Warning" }}{{ $reason := "Unhealthy" }}{{ $msg := printf "%s probe failed: %s" $kind $out }}
{{- $count := max 1 (div (add (sub (sub (now).Unix $t0) $d) (div $T 2)) $T) }}
{{- $first := date "2006-01-02T15:04:05Z07:00" (add $t0 $d) }}
{{- $last := now | dateModify (printf "-%ds" $T) | date "2006-01-02T15:04:05Z07:00" }}
"""

# One core/v1 Event as the kubelet's recorder writes it. Reads $pod $i $c $etype $reason $msg $count $ord
# $first (firstTimestamp; "" keeps the one already recorded) $last.
# The name is the pod's name and 16 hex digits, as the recorder's; here they are fixed per container and kind of
# event (so a repeated event is the same object, its count raised: what the recorder's aggregation does) and
# they grow in the kubelet's order, so that events of the same second list in that order.
SNIPPETS["event"] = r"""
{{- $base := (toDate "2006-01-02T15:04:05Z07:00" $pod.metadata.creationTimestamp).Unix }}
apiVersion: v1
kind: Event
metadata:
  name: {{ printf "%s.%x" $pod.metadata.name (add (mul $base 1000000000) 1999000000 (mul $i 100) $ord) | Quote }}
  namespace: {{ $pod.metadata.namespace | Quote }}
involvedObject:
  apiVersion: v1
  kind: Pod
  name: {{ $pod.metadata.name | Quote }}
  namespace: {{ $pod.metadata.namespace | Quote }}
  uid: {{ $pod.metadata.uid | Quote }}
  resourceVersion: {{ $pod.metadata.resourceVersion | Quote }}
  fieldPath: {{ printf "spec.containers{%s}" $c.name | Quote }}
type: {{ $etype | Quote }}
reason: {{ $reason | Quote }}
message: {{ $msg | Quote }}
source:
  component: kubelet
  host: {{ $pod.spec.nodeName | Quote }}
reportingComponent: kubelet
reportingInstance: {{ $pod.spec.nodeName | Quote }}
count: {{ $count }}
{{- if $first }}
firstTimestamp: {{ $first | Quote }}
{{- end }}
lastTimestamp: {{ $last | Quote }}
"""

_MARKER = re.compile(r"\{\{/\* labkit:([a-z-]+) \*/\}\}")
_JQ_CATALOG = "def catalog: {};"


def expand(text: str, snippets: dict[str, str]) -> str:
    """Replace every ``{{/* labkit:NAME */}}`` marker by its snippet (snippets may use others)."""
    for _ in range(10):
        new = _MARKER.sub(lambda m: _snippet(m.group(1), snippets), text)
        if new == text:
            return text
        text = new
    raise ManifestError("labkit stage snippets include each other in a loop", fix=f"look at {__name__}.SNIPPETS")


def _snippet(name: str, snippets: dict[str, str]) -> str:
    if name not in snippets:
        raise ManifestError(f"unknown stage marker labkit:{name}", fix=f"one of {sorted(snippets)}")
    return snippets[name].strip("\n")


def _render(value: Any, jq_catalog: str, snippets: dict[str, str]) -> Any:
    if isinstance(value, str):
        return expand(value.replace(_JQ_CATALOG, jq_catalog), snippets) if ("labkit:" in value
                                                                              or _JQ_CATALOG in value) else value
    if isinstance(value, list):
        return [_render(v, jq_catalog, snippets) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, jq_catalog, snippets) for k, v in value.items()}
    return value


def stage_files() -> list[Path]:
    return sorted(data_file("stages").glob("*.yaml"))


def stage_documents(catalog: Catalog | None = None, files: list[Path] | None = None) -> list[dict[str, Any]]:
    """Every labkit Stage, in file order (node stages first), with the catalog and the snippets filled in."""
    import yaml

    catalog = catalog or load_catalog()
    jq_catalog = "def catalog: " + json.dumps(catalog.for_jq(), separators=(",", ":")) + ";"
    snippets = {**SNIPPETS, "catalog": catalog.for_gotpl()}
    # libyaml's loader when present: `labkit up` waits for this.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs: list[dict[str, Any]] = []
    for path in files or stage_files():
        for doc in yaml.load_all(path.read_text(), Loader=loader):
            if doc:
                docs += (doc.get("items") or []) if doc.get("kind") == "List" else [doc]
    return [gate(_render(d, jq_catalog, snippets)) for d in docs]


def main(argv: list[str] | None = None) -> int:
    """Print the rendered Stages as YAML, for ``kubectl apply -f -``."""
    import yaml

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print("usage: python -m labkit.cluster.stages | kubectl apply -f -\n"
              f"renders labkit/data/stages/*.yaml with the image catalog (labkit/data/images.yaml, ${IMAGES_ENV})")
        return 0
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    sys.stdout.write(yaml.dump_all(stage_documents(), Dumper=dumper, sort_keys=False, width=1 << 20))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
