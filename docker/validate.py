#!/usr/bin/env python3
"""The checks behind docker/validate.sh (which installs the tools and sets PYTHONPATH, HADOLINT
and PROMTOOL). Each check prints what it looked at; any failure makes the exit code 1."""

import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path, PurePosixPath

import jsonschema
import yaml

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
PROMETHEUS = DOCKER / "prometheus" / "prometheus.yml"
GRAFANA = DOCKER / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "pgtenant.json"
METRICS = GRAFANA / "metrics.txt"
PGTENANT_TOML = DOCKER / "pgtenant.toml"
HADOLINT = os.environ.get("HADOLINT", "hadolint")
PROMTOOL = os.environ.get("PROMTOOL", "promtool")

# Grafana's own variables, and what stands in for them when promtool parses an expression.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}


def rel(path):
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


class Failed(Exception):
    pass


class ComposeUnparsable(Failed):
    pass


class Check:
    """Collects the problems one check finds and the facts it established."""

    def __init__(self, name):
        self.name = name
        self.problems = []
        self.facts = []

    def fail(self, message):
        self.problems.append(message)

    def ok(self, message):
        self.facts.append(message)

    def require(self, condition, message):
        if not condition:
            self.fail(message)
        return condition


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (Compose refuses them; PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=UniqueKeyLoader)


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)


def tool_version(cmd):
    try:
        out = run(cmd)
    except OSError:
        return "?"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "?"


def yaml_path(parts):
    return ".".join(str(p) for p in parts) or "(top level)"


# --- shared facts: the compose file ---------------------------------------------------------------


def compose():
    if not hasattr(compose, "cached"):
        try:
            compose.cached = load_yaml(COMPOSE)
        except yaml.YAMLError as e:
            raise ComposeUnparsable(f"{rel(COMPOSE)} does not parse: {e}") from e
    return compose.cached


def services():
    return compose().get("services") or {}


def service_env(name):
    env = services().get(name, {}).get("environment") or {}
    if isinstance(env, list):
        return {item.split("=", 1)[0]: item.split("=", 1)[1] if "=" in item else None for item in env}
    return env


def bind_mounts(name):
    """(host path resolved against docker/, container path) for a service's bind mounts."""
    mounts = []
    for volume in services().get(name, {}).get("volumes") or []:
        if isinstance(volume, str):
            parts = volume.split(":")
            source, target = parts[0], parts[1] if len(parts) > 1 else None
            if target and (source.startswith((".", "/", "~"))):
                mounts.append((DOCKER / source, target))
        elif isinstance(volume, dict) and volume.get("type") == "bind":
            mounts.append((DOCKER / volume["source"], volume["target"]))
    return mounts


def host_path(service, container_path):
    """The host file behind a container path, through the service's bind mounts (deepest first)."""
    container_path = PurePosixPath(container_path)
    for source, target in sorted(bind_mounts(service), key=lambda m: -len(m[1])):
        target = PurePosixPath(target)
        if container_path == target or target in container_path.parents:
            return source / container_path.relative_to(target)
    return None


# --- 1. the compose file against the Compose Specification -----------------------------------------


def find_compose_schema():
    for entry in sys.path:
        candidate = Path(entry) / "check_jsonschema" / "builtin_schemas" / "vendor" / "compose-spec.json"
        if candidate.is_file():
            return candidate
    raise Failed("compose-spec.json not found (is check-jsonschema installed? run docker/validate.sh)")


def check_compose(c):
    schema_path = find_compose_schema()
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    try:
        doc = compose()
    except ComposeUnparsable as e:
        c.fail(str(e))
        return
    validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    for error in errors:
        c.fail(f"{rel(COMPOSE)}: {yaml_path(error.absolute_path)}: {error.message}")
    if not errors:
        c.ok(
            f"{rel(COMPOSE)} valid against the Compose Specification schema "
            f"({schema.get('$id', '?')}, {schema.get('$schema', '').rsplit('/', 2)[-2]} draft, "
            f"from {rel(schema_path)})"
        )

    svcs = services()
    volumes_declared = set((doc.get("volumes") or {}).keys())
    binds = 0
    for name, svc in svcs.items():
        build = svc.get("build")
        image = svc.get("image")
        if build is not None:
            context = DOCKER / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            c.require(context.is_dir(), f"services.{name}.build.context: {rel(context)} is not a directory")
            c.require(
                (context / dockerfile).is_file(),
                f"services.{name}.build.dockerfile: {rel(context / dockerfile)} does not exist",
            )
        elif c.require(bool(image), f"services.{name}: neither image nor build"):
            ref = image.split("@", 1)[0]
            tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else None
            c.require(
                tag not in (None, "latest") or "@sha256:" in image,
                f"services.{name}.image: {image!r} is not pinned (give a tag other than latest)",
            )
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            kind = (
                volume.get("type")
                if isinstance(volume, dict)
                else ("bind" if source.startswith((".", "/", "~")) else "volume")
            )
            if kind == "bind":
                binds += 1
                c.require(
                    (DOCKER / source).exists(),
                    f"services.{name}.volumes: bind mount source {rel(DOCKER / source)} does not exist",
                )
            elif kind == "volume" and source:
                c.require(
                    source in volumes_declared,
                    f"services.{name}.volumes: named volume {source!r} is not declared under volumes:",
                )
        depends = svc.get("depends_on") or {}
        for dep in depends:
            if not c.require(dep in svcs, f"services.{name}.depends_on: no service {dep!r}"):
                continue
            condition = depends[dep].get("condition") if isinstance(depends, dict) else None
            if condition == "service_healthy":
                c.require(
                    "healthcheck" in svcs[dep],
                    f"services.{name}.depends_on.{dep}: service_healthy, but {dep} has no healthcheck",
                )
    c.ok(
        f"{len(svcs)} services ({', '.join(svcs)}); {binds} bind-mount sources exist; "
        "named volumes declared; depends_on targets exist (healthchecks where service_healthy); "
        "images pinned"
    )


# --- 2. the Dockerfile ---------------------------------------------------------------------------


def dockerfile_instructions(text):
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def dockerignore_patterns():
    path = REPO / ".dockerignore"
    if not path.is_file():
        return []
    patterns = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        patterns.append((re.compile(regex + r"\Z"), negate, line))
    return patterns


def dockerignored(relpath, patterns):
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = PurePosixPath(relpath).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for regex, negate, _ in patterns:
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def check_dockerfile(c):
    out = run([HADOLINT, "--no-color", rel(DOCKERFILE)])
    findings = (out.stdout + out.stderr).strip()
    if out.returncode != 0:
        c.fail(f"hadolint {rel(DOCKERFILE)} exited {out.returncode}:\n{findings}")
    else:
        c.ok(f"hadolint ({tool_version([HADOLINT, '--version'])}): no findings in {rel(DOCKERFILE)}")

    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = dockerfile_instructions(text)
    build = services().get("pgtenant", {}).get("build") or {}
    context = DOCKER / (build.get("context", ".") if isinstance(build, dict) else build)
    patterns = dockerignore_patterns()
    copies = 0
    for word, args in instructions:
        if word not in ("COPY", "ADD"):
            continue
        tokens = [t for t in args.split() if not t.startswith("--")]
        if any(t.startswith("--from") for t in args.split()) or len(tokens) < 2:
            continue
        for source in tokens[:-1]:
            copies += 1
            path = context / source
            if not c.require(path.exists(), f"{word} {source}: {rel(path)} does not exist in the build context"):
                continue
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            ignored = [f for f in files if dockerignored(f.relative_to(context).as_posix(), patterns)]
            c.require(
                not ignored,
                f"{word} {source}: .dockerignore leaves out {', '.join(rel(f) for f in ignored[:5])}",
            )
    c.ok(f"{copies} COPY sources exist in the build context ({rel(context)}) and .dockerignore keeps them")

    stages = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    final = instructions[stages[-1]:] if stages else []
    users = [args for word, args in final if word == "USER"]
    c.require(
        users and users[-1].split(":")[0] not in ("root", "0"),
        "the final stage does not switch to a non-root USER",
    )
    exposed = {p.split("/")[0] for word, args in final if word == "EXPOSE" for p in args.split()}
    c.require({"6432", "9930"} <= exposed, f"the final stage exposes {sorted(exposed)}, not 6432 and 9930")
    entry = [args for word, args in final if word == "ENTRYPOINT"]
    c.require(entry and json.loads(entry[-1]) == ["pgtenant"], 'ENTRYPOINT is not ["pgtenant"]')
    cmd = [args for word, args in final if word == "CMD"]
    cmd = json.loads(cmd[-1]) if cmd else []
    c.require(cmd[:2] == ["run", "--config"] and len(cmd) == 3, f"CMD {cmd} is not run --config FILE")
    if len(cmd) == 3:
        mounted = host_path("pgtenant", cmd[2])
        c.require(
            mounted is not None and mounted.resolve() == PGTENANT_TOML.resolve(),
            f"compose.yaml does not mount {rel(PGTENANT_TOML)} at {cmd[2]} (the image's CMD)",
        )
    c.ok(
        f"{len(stages)} stages; runtime stage runs as USER {users[-1] if users else '?'}, "
        f"exposes {', '.join(sorted(exposed))}, CMD reads {cmd[-1] if cmd else '?'} (mounted by compose.yaml)"
    )


# --- 3. Prometheus -------------------------------------------------------------------------------


def pgtenant_toml():
    if not hasattr(pgtenant_toml, "cached"):
        with open(PGTENANT_TOML, "rb") as f:
            pgtenant_toml.cached = tomllib.load(f)
    return pgtenant_toml.cached


def check_prometheus(c):
    out = run([PROMTOOL, "check", "config", rel(PROMETHEUS)])
    if out.returncode != 0:
        c.fail(f"promtool check config exited {out.returncode}:\n{(out.stdout + out.stderr).strip()}")
    else:
        c.ok(f"promtool check config ({tool_version([PROMTOOL, '--version'])}): {rel(PROMETHEUS)} SUCCESS")

    config = load_yaml(PROMETHEUS)
    metrics_port = pgtenant_toml().get("server", {}).get("metrics_addr", "").rsplit(":", 1)[-1]
    found = []
    for job in config.get("scrape_configs") or []:
        for static in job.get("static_configs") or []:
            for target in static.get("targets") or []:
                host, _, port = target.rpartition(":")
                if host == "pgtenant":
                    found.append(f"{job.get('job_name')} -> {target}{job.get('metrics_path', '/metrics')}")
                    c.require(
                        port == metrics_port,
                        f"job {job.get('job_name')}: scrapes {target}, but pgtenant.toml's metrics_addr port is {metrics_port!r}",
                    )
    c.require(found, f"no scrape job targets the compose service pgtenant:{metrics_port}")
    prom = services().get("prometheus", {})
    config_flag = [a.split("=", 1)[1] for a in prom.get("command") or [] if a.startswith("--config.file=")]
    config_file = config_flag[0] if config_flag else "/etc/prometheus/prometheus.yml"
    mounted = host_path("prometheus", config_file)
    c.require(
        mounted is not None and mounted.resolve() == PROMETHEUS.resolve(),
        f"compose.yaml does not mount {rel(PROMETHEUS)} at {config_file}",
    )
    if found:
        c.ok(f"scrape job {', '.join(found)} (the pgtenant service, metrics_addr's port); mounted at {config_file}")


# --- 4. the Grafana dashboard and its metric contract -----------------------------------------------


def walk(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield path + (key,), key, value
            yield from walk(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, path + (i,))


def provisioned_datasource():
    for path in sorted((GRAFANA / "provisioning" / "datasources").glob("*.y*ml")):
        for ds in load_yaml(path).get("datasources") or []:
            if ds.get("type") == "prometheus":
                return path, ds
    return None, {}


def contract_metrics(c):
    names = []
    for n, line in enumerate(METRICS.read_text(encoding="utf-8").splitlines(), 1):
        if not c.require(
            re.fullmatch(r"pgtenant_[a-z0-9_]+", line) is not None,
            f"{rel(METRICS)}:{n}: {line!r} is not one pgtenant_ metric name alone on its line",
        ):
            continue
        c.require(
            re.search(r"_(bucket|sum|count)$", line) is None,
            f"{rel(METRICS)}:{n}: {line} carries a histogram suffix; list the family name",
        )
        c.require(line not in names, f"{rel(METRICS)}:{n}: {line} listed twice")
        names.append(line)
    return names


def dashboard_queries(dash):
    """(where, expression) for every PromQL text in the dashboard: panel targets and variables."""
    queries = []
    for path, key, value in walk(dash):
        if key == "expr" and isinstance(value, str):
            queries.append((yaml_path(path), value))
        elif path[:1] == ("templating",) and key in ("query", "definition"):
            text = value.get("query") if isinstance(value, dict) else value
            if isinstance(text, str) and text:
                queries.append((yaml_path(path), text))
    return queries


def check_dashboard(c):
    try:
        dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        c.fail(f"{rel(DASHBOARD)} is not JSON: {e}")
        return
    c.require(isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 36,
              f"schemaVersion {dash.get('schemaVersion')!r} < 36")
    c.require(bool(dash.get("uid")) and bool(dash.get("title")), "the dashboard needs a uid and a title")

    ds_file, ds = provisioned_datasource()
    uid = ds.get("uid")
    c.require(uid, "no provisioned prometheus datasource with a uid in grafana/provisioning/datasources/")
    refs = 0
    for path, key, value in walk(dash):
        if key != "datasource":
            continue
        if isinstance(value, dict) and value.get("type") == "grafana":
            continue
        refs += 1
        c.require(
            isinstance(value, dict) and value.get("type") == "prometheus" and value.get("uid") == uid,
            f"{yaml_path(path)}: datasource {value!r} is not the provisioned one (prometheus, uid {uid!r})",
        )

    panels = [
        panel.get("id")
        for _, key, value in walk(dash)
        if key == "panels"
        for panel in value
        if isinstance(panel, dict) and panel.get("id") is not None
    ]
    c.require(len(panels) == len(set(panels)), f"panel ids are not unique: {sorted(panels)}")
    for path, key, value in walk(dash):
        if key == "panels":
            for i, panel in enumerate(value):
                c.require("gridPos" in panel, f"{yaml_path(path + (i,))}: panel without gridPos")
                if panel.get("type") != "row":
                    c.require(panel.get("targets"), f"{yaml_path(path + (i,))} ({panel.get('title')}): no targets")

    variables = {v.get("name"): v for v in (dash.get("templating") or {}).get("list") or []}
    for name, query in (
        ("tenant", "label_values(pgtenant_transactions_total, tenant)"),
        ("shard", None),
    ):
        var = variables.get(name)
        if not c.require(var is not None, f"no {name!r} template variable"):
            continue
        text = var.get("query")
        text = text.get("query") if isinstance(text, dict) else text
        if query is not None:
            c.require(
                re.sub(r"\s", "", text or "") == re.sub(r"\s", "", query),
                f"variable {name}: query {text!r}, expected {query!r}",
            )

    contract = contract_metrics(c)
    queries = dashboard_queries(dash)
    c.require(queries, "the dashboard has no PromQL expressions")
    used = {}
    for where, expr in queries:
        for name in re.findall(r"\bpgtenant_[A-Za-z0-9_:]*", expr):
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            used.setdefault(family, set()).add(name)
            c.require(
                family in contract,
                f"{where}: {name} is not a metric pgtenant exports (not in {rel(METRICS)}): {expr}",
            )
        for var in re.findall(r"\$\{?(\w+)", expr):
            c.require(
                var in variables or var in GRAFANA_BUILTINS,
                f"{where}: ${var} is neither a dashboard variable nor one of Grafana's: {expr}",
            )
    unused = [m for m in contract if m not in used]
    c.require(not unused, f"metrics in {rel(METRICS)} that no panel shows: {', '.join(unused)}")

    # PromQL syntax: promtool parses every expression as a recording rule, with the variables
    # replaced by values of the right kind.
    def concrete(expr):
        for name, value in GRAFANA_BUILTINS.items():
            expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
        for name in variables:
            expr = re.sub(r"\$\{" + name + r"(:\w+)?\}|\$" + name + r"\b", ".*", expr)
        return expr

    exprs = [(where, e) for where, e in queries if not e.lstrip().startswith("label_values(")]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": concrete(e)} for i, (_, e) in enumerate(exprs)
    ]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".rules.yml", delete=False) as f:
        yaml.safe_dump(rules, f)
        rules_file = f.name
    try:
        out = run([PROMTOOL, "check", "rules", rules_file])
    finally:
        os.unlink(rules_file)
    if out.returncode != 0:
        text = (out.stdout + out.stderr).strip()
        bad = sorted({int(i) for i in re.findall(r"dashboard:expr_(\d+)", text)})
        c.fail(
            f"promtool check rules: dashboard PromQL does not parse:\n{text}\n"
            + "\n".join(f"expr_{i} is {exprs[i][0]}: {exprs[i][1]}" for i in bad if i < len(exprs))
        )
    else:
        c.ok(f"promtool parses all {len(exprs)} PromQL expressions")

    c.ok(
        f"{rel(DASHBOARD)}: schemaVersion {dash.get('schemaVersion')}, uid {dash.get('uid')}, "
        f"{len(panels)} panels, {refs} datasource references all uid {uid!r} ({rel(ds_file) if ds_file else '?'}), "
        f"variables {', '.join(variables)}"
    )
    c.ok(
        f"{len(queries)} queries use {len(used)} metric families, all in {rel(METRICS)} "
        f"({len(contract)} names, each shown by a panel)"
    )


def check_provisioning(c):
    grafana = services().get("grafana")
    if not c.require(grafana is not None, "compose.yaml has no grafana service"):
        return
    provisioning = host_path("grafana", "/etc/grafana/provisioning")
    c.require(
        provisioning is not None and provisioning.resolve() == (GRAFANA / "provisioning").resolve(),
        f"compose.yaml does not mount {rel(GRAFANA / 'provisioning')} at /etc/grafana/provisioning",
    )

    ds_file, ds = provisioned_datasource()
    if c.require(ds_file is not None, "no prometheus datasource under grafana/provisioning/datasources/"):
        c.require(load_yaml(ds_file).get("apiVersion") == 1, f"{rel(ds_file)}: apiVersion is not 1")
        url = ds.get("url", "")
        m = re.fullmatch(r"https?://([^:/]+)(?::(\d+))?/?", url)
        c.require(m and m.group(1) in services(), f"{rel(ds_file)}: url {url!r} is not a compose service")
        c.ok(f"{rel(ds_file)}: datasource uid {ds.get('uid')!r} -> {url} (compose service {m.group(1) if m else '?'})")

    provider_files = sorted((GRAFANA / "provisioning" / "dashboards").glob("*.y*ml"))
    c.require(provider_files, "no dashboard provider under grafana/provisioning/dashboards/")
    for path in provider_files:
        doc = load_yaml(path)
        c.require(doc.get("apiVersion") == 1, f"{rel(path)}: apiVersion is not 1")
        for provider in doc.get("providers") or []:
            target = (provider.get("options") or {}).get("path")
            source = host_path("grafana", target) if target else None
            if not c.require(
                source is not None and source.is_dir(),
                f"{rel(path)}: provider {provider.get('name')!r} reads {target!r}, which no bind mount of "
                "the grafana service backs with an existing directory",
            ):
                continue
            boards = sorted(p.name for p in source.glob("*.json"))
            c.require(DASHBOARD.name in boards, f"{rel(path)}: {rel(source)} does not hold {DASHBOARD.name}")
            c.ok(f"{rel(path)}: provider {provider.get('name')!r} reads {target} = {rel(source)} ({', '.join(boards)})")

    home = service_env("grafana").get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        source = host_path("grafana", home)
        c.require(source is not None and source.is_file(), f"GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH {home} is no mounted file")


# --- 5. pgtenant.toml against compose.yaml and the init SQL ----------------------------------------


def init_sql(service):
    text = ""
    for source, target in bind_mounts(service):
        if target.startswith("/docker-entrypoint-initdb.d/") and source.is_file():
            text += source.read_text(encoding="utf-8") + "\n"
    return text


def check_pgtenant_config(c):
    cfg = pgtenant_toml()
    server = cfg.get("server", {})
    svc = services().get("pgtenant", {})
    published = {str(p).rsplit(":", 1)[-1].split("/")[0] for p in svc.get("ports") or []}
    for key, port in (("listen", "6432"), ("metrics_addr", "9930")):
        addr = server.get(key, "")
        c.require(addr == f"0.0.0.0:{port}", f"server.{key} is {addr!r}, expected 0.0.0.0:{port} (reachable from other containers)")
        c.require(port in published, f"compose.yaml does not publish pgtenant's port {port}")
    env = service_env("pgtenant")
    shards = cfg.get("shards", {})
    for name, shard in shards.items():
        host = shard.get("host")
        c.require(host in services(), f"shards.{name}.host {host!r} is not a compose service")
        c.require("healthcheck" in services().get(host, {}), f"shards.{name}: service {host} has no healthcheck")
        var = shard.get("password_env")
        if var:
            c.require(var in env, f"shards.{name}.password_env {var} is not set in the pgtenant service's environment")
        sql = init_sql(host)
        c.require(
            re.search(rf"CREATE\s+ROLE\s+{re.escape(shard.get('user', ''))}\b", sql, re.I),
            f"shards.{name}: no init script of service {host} creates role {shard.get('user')!r}",
        )
        for getenv in re.findall(r"\\getenv\s+\w+\s+(\w+)", sql):
            c.require(getenv in service_env(host), f"service {host}: the init SQL reads {getenv}, which its environment does not set")
    placements = {}
    guc = cfg.get("tenancy", {}).get("guc", "app.current_tenant")
    for name, tenant in cfg.get("tenants", {}).items():
        placement = tenant.get("placement")
        placements.setdefault(placement, []).append(name)
        shard = tenant.get("shard")
        if not c.require(shard in shards, f"tenants.{name}.shard {shard!r} is not a shard"):
            continue
        host = shards[shard].get("host")
        sql = init_sql(host)
        database = tenant.get("database")
        if database and tenant.get("status", "active") == "active":
            c.require(
                re.search(rf"CREATE\s+DATABASE\s+{re.escape(database)}\b", sql, re.I),
                f"tenants.{name}: no init script of service {host} creates database {database}",
            )
        if placement == "shared":
            section = sql.split(f"\\connect {database}", 1)[-1]
            c.require(
                re.search(r"FORCE\s+ROW\s+LEVEL\s+SECURITY", section, re.I)
                and re.search(rf"CREATE\s+POLICY[^;]*current_setting\('{re.escape(guc)}'", section, re.I),
                f"tenants.{name}: database {database} on {host} has no table with forced RLS and a policy on current_setting('{guc}')",
            )
    for name, user in cfg.get("users", {}).items():
        c.require(str(user.get("password", "")).startswith("SCRAM-SHA-256$"), f"users.{name}.password is not a SCRAM-SHA-256 verifier")
    shard_hosts = ", ".join(f"{n}->{s.get('host')}" for n, s in shards.items())
    c.ok(
        f"{rel(PGTENANT_TOML)}: listen/metrics_addr on 0.0.0.0 and published; shards "
        f"{shard_hosts} are compose services with "
        f"healthchecks, password_env set, role created by init SQL; tenants "
        + "; ".join(f"{p}: {', '.join(ts)}" for p, ts in placements.items())
        + " have their databases (shared: forced RLS on current_setting) in init SQL"
    )


CHECKS = [
    ("compose", check_compose),
    ("dockerfile", check_dockerfile),
    ("prometheus", check_prometheus),
    ("dashboard", check_dashboard),
    ("provisioning", check_provisioning),
    ("pgtenant.toml", check_pgtenant_config),
]


def main():
    failed = 0
    for name, fn in CHECKS:
        c = Check(name)
        try:
            fn(c)
        except ComposeUnparsable:
            if name != "compose":
                c.fail(f"not checked: it needs {rel(COMPOSE)}, which does not parse (see compose)")
        except (Failed, OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError,
                tomllib.TOMLDecodeError) as e:
            c.fail(f"{type(e).__name__}: {e}")
        if c.problems:
            failed += 1
            print(f"docker/validate: FAIL {name}")
            for problem in c.problems:
                print("    " + problem.replace("\n", "\n    "))
        else:
            print(f"docker/validate: ok   {name}")
            for fact in c.facts:
                print("    - " + fact)
    if failed:
        print(f"docker/validate: {failed} of {len(CHECKS)} checks FAILED")
        return 1
    print(f"docker/validate: all {len(CHECKS)} checks ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
