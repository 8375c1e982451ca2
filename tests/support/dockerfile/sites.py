"""The rules of the OHIF viewer's image: a prebuilt static app on nginx."""

from __future__ import annotations

import re
from collections.abc import Sequence

from tests.support.dockerfile.parser import (
    Stage,
    commands,
    copy_parts,
    final_env,
)
from tests.support.dockerfile.rules import (
    check_writable_dir,
)

NGINX_HTML = "/usr/share/nginx/html"
NGINX_TEMPLATES = "/etc/nginx/templates"
NGINX_CONF_D = "/etc/nginx/conf.d"
# A template's ${NAME} and $NAME references (what envsubst would replace).
_TEMPLATE_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def check_static_site_image(
    stages: Sequence[Stage], package: str, version: str, sha512: str, port: int
) -> list[str]:
    """An npm package's prebuilt dist/ on unprivileged nginx, fetched pinned and checked.

    The fetch stage packs exactly package@version and checks the tarball's sha512; the
    bundled app-config.js is removed (the deployment mounts its own); the final stage is
    nginx-unprivileged with the dist at nginx's root, its server from a template under
    /etc/nginx/templates, the image's own entrypoint and command (which render the
    templates), the conf.d folder given to the runtime user, and the port exposed.
    """
    violations = []
    fetch, final = stages[0], stages[-1]
    words = [" ".join(c) for c in commands(fetch)]
    tarball = f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not any(w.startswith("npm pack") and w.endswith(f" {package}@{version}") for w in words):
        violations.append(f"the first stage does not `npm pack {package}@{version}`")
    found = commands(fetch)
    if ["echo", f"{sha512}  {tarball}"] not in found or ["sha512sum", "-c", "-"] not in found:
        violations.append(f"the tarball {tarball} is not checked against its sha512")
    if "rm package/dist/app-config.js" not in words:
        violations.append("the package's own app-config.js (OHIF's demo server) is kept")
    if "nginx-unprivileged" not in final.base:
        violations.append(f"FROM {final.base}: the final stage is not nginx-unprivileged")
    copies = [copy_parts(c) for c in final.all("COPY")]
    if not any(
        flags.get("from") == fetch.name
        and [s.rstrip("/") for s in sources] == ["/fetch/package/dist"]
        and dest.rstrip("/") == NGINX_HTML
        for flags, sources, dest in copies
    ):
        violations.append(f"the final stage does not COPY the package's dist/ to {NGINX_HTML}")
    if not any(
        "from" not in flags
        and dest.startswith(f"{NGINX_TEMPLATES}/")
        and dest.endswith(".template")
        for flags, _, dest in copies
    ):
        violations.append(f"no server template is copied into {NGINX_TEMPLATES}/")
    for keyword in ("ENTRYPOINT", "CMD"):
        if final.all(keyword):
            violations.append(f"{keyword}: nginx's own renders the templates and starts it")
    violations += check_writable_dir(final, NGINX_CONF_D)
    exposed = [w for i in final.all("EXPOSE") for w in i.args.split()]
    if exposed != [str(port)]:
        violations.append(f"EXPOSE {exposed}, not {port}")
    return violations


def check_template_variables(stages: Sequence[Stage], template: str) -> list[str]:
    """The template's environment variables all pass NGINX_ENVSUBST_FILTER; nginx's do not.

    The image's entrypoint substitutes the variables that are set and match the filter, so a
    variable of ours outside it would stay literal, and a filter that matched nginx's own
    ($uri, $host) would blank them whenever the environment had one by that name.
    """
    filter_ = final_env(stages[-1]).get("NGINX_ENVSUBST_FILTER")
    if not filter_:
        return ["NGINX_ENVSUBST_FILTER is not set: every variable in the environment is replaced"]
    pattern = re.compile(filter_)
    body = "\n".join(line.split("#", 1)[0] for line in template.splitlines())
    ours = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", body))
    nginx = set(_TEMPLATE_VARIABLE.findall(body)) - ours
    violations = [
        f"${{{name}}} does not match {filter_}" for name in sorted(ours) if not pattern.search(name)
    ]
    violations += [
        f"${name} of nginx matches {filter_}" for name in sorted(nginx) if pattern.search(name)
    ]
    return violations + ([] if ours else ["the template uses no variable of ours"])
