"""The model page served at `/`: summary, figure and a form that classifies typed values.

Self-contained HTML (inline CSS, JS and a base64 PNG; nothing from other hosts), rendered once
per service. The form's script posts to `/predict` and shows the labels and probabilities, or
the service's message when the input is rejected.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging

import numpy as np

from ..io import SavedModel
from ..predict import classify

__all__ = ["CONTENT_SECURITY_POLICY", "render_page"]

log = logging.getLogger("bayesmix.serve")

#: Sent with the page: no resource from anywhere but this service (images inline).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; connect-src 'self'; form-action 'none'; base-uri 'none'"
)


def render_page(model: SavedModel, info: dict) -> str:
    """The HTML of the model page; `info` is `describe(model)` plus the service limits."""
    k, d, columns = info["k"], info["d"], info["columns"]
    figures = _figures(model) if d == 1 else []
    method = {"map": "MAP", "map+nuts": "MAP and collapsed NUTS"}.get(
        info["fit_method"], info["fit_method"]
    )
    spec = info.get("model") or {}
    spec_text = ", ".join(f"{key} {v}" for key, v in spec.items() if key != "k" and v is not None)
    hint = (
        "numbers separated by commas, spaces or new lines (one value per row)"
        if d == 1
        else f"one row per line: {d} numbers ({', '.join(columns)}) separated by commas or spaces"
    )
    rows = _example_rows(model)
    example = ", ".join(rows) if d == 1 else "\n".join(rows)
    config = {"columns": columns, "k": k, "maxRows": info["limits"]["max_rows"]}
    body = [
        f"<h1>Mixture model: {k} component{'s' if k != 1 else ''} in {d} "
        f"column{'s' if d != 1 else ''}</h1>",
        f'<p class="sub">Columns {_e(", ".join(columns))} &middot; {_e(spec_text)} &middot; '
        f"fitted by {_e(method)} &middot; bayesmix {_e(info['bayesmix_version'])} &middot; "
        f"saved {_e(info['created'])}</p>",
        "<section><h2>Classify values</h2>",
        '<form id="classify" novalidate>',
        f'<label for="values">Values: {_e(hint)}</label>',
        f'<textarea id="values" name="values" rows="4" spellcheck="false">{_e(example)}</textarea>',
        '<div class="row"><label for="temperature">Temperature</label>',
        '<select id="temperature" name="temperature">',
        '<option value="0">0: the MAP component</option>',
        '<option value="1">1: a draw from p(component | value)</option></select>',
        '<label for="seed">Seed</label>',
        f'<input id="seed" name="seed" type="number" min="0" max="{2**32 - 1}" step="1" '
        'placeholder="random">',
        '<button id="submit" type="submit">Classify</button></div></form>',
        '<p id="status" role="status" aria-live="polite"></p>',
        '<table id="result" hidden><thead></thead><tbody></tbody></table></section>',
    ]
    if figures:
        body.append("<section><h2>The fitted mixture</h2>")
        body += [f'<img alt="{_e(alt)}" src="data:image/png;base64,{png}">' for alt, png in figures]
        body.append("</section>")
    body += _parameters(model, info) + _fit(info) + _api(info, rows)
    return _TEMPLATE.format(
        title=_e(f"bayesmix model (K = {k}, D = {d})"),
        style=_STYLE,
        body="\n".join(body),
        config=json.dumps(config).replace("<", "\\u003c"),
        script=_SCRIPT,
    )


def _example_rows(model: SavedModel) -> list[str]:
    """Rows to start from: each component's loc (and, in 1-D, the points between them)."""
    locs = np.asarray(model.fit.params.locs, dtype=float)
    if locs.shape[1] == 1:
        v = np.sort(locs[:, 0])
        v = np.sort(np.concatenate([v, (v[1:] + v[:-1]) / 2]))
        return [f"{x:.3g}" for x in v]
    return [", ".join(f"{x:.3g}" for x in row) for row in locs]


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(v: object) -> str:
    if v is None:
        return "&ndash;"
    if isinstance(v, list):
        return _num(v[0]) if len(v) == 1 else "[" + ", ".join(_num(x) for x in v) + "]"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return _e(v)
    return f"{v:.4g}"


def _figures(model: SavedModel) -> list[tuple[str, str]]:
    """[(alt text, base64 PNG)]: the density of each component and their sum, and the MAP
    component over the same grid (D == 1)."""
    from .. import plot

    p = model.fit.params
    locs = np.asarray(p.locs)[:, 0]
    lo, hi = float(locs.min()), float(locs.max())
    scale = getattr(p, "scale", None)
    spread = float(np.max(scale)) if scale is not None else 0.25 * (hi - lo) or 1.0
    grid = np.linspace(lo - 4 * spread, hi + 4 * spread, 400)
    try:
        density = plot.mixture_density(model.fit, np.empty((0, 1)), grid)
        ax = density.axes[0]
        for line in ax.get_lines():
            if line.get_label() == "data":  # no data is saved with the model
                line.remove()
        ax.legend(loc="best")
        labels = classify(model.fit, grid[:, None])[0]
        membership = plot.map_assignment(grid, labels)
        return [
            ("Density of each weighted component and of the mixture", _png(density)),
            ("MAP component (membership) over the same range of values", _png(membership)),
        ]
    except Exception as exc:  # the page must show without its figure rather than fail
        log.warning("the model page has no figure: %s: %s", type(exc).__name__, exc)
        return []


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()


def _parameters(model: SavedModel, info: dict) -> list[str]:
    params, k = info["params"], info["k"]
    per_k = getattr(getattr(model.fit, "model", None), "component_fields", ("weights", "locs"))
    comp = [name for name in params if name in per_k]
    shared = [name for name in params if name not in per_k]
    head = "".join(f"<th>{_e(name)}</th>" for name in comp)
    rows = [
        f"<tr><td>{j}</td>" + "".join(f"<td>{_num(params[n][j])}</td>" for n in comp) + "</tr>"
        for j in range(k)
    ]
    out = [
        "<section><h2>MAP parameters</h2>",
        f"<table><thead><tr><th>component</th>{head}</tr></thead><tbody>{''.join(rows)}"
        "</tbody></table>",
    ]
    if shared:
        items = "".join(f"<li>{_e(n)} = {_num(params[n])}</li>" for n in shared)
        out.append(f"<p>Shared by every component:</p><ul>{items}</ul>")
    priors = "".join(f"<li>{_e(n)} = {_num(v)}</li>" for n, v in (info["priors"] or {}).items())
    out += [f"<h3>Priors</h3><ul>{priors}</ul>", "</section>"]
    return out


def _fit(info: dict) -> list[str]:
    m = info["map"]
    out = ["<section><h2>Fit</h2><ul>"]
    out += [f"<li>{_e(n.replace('_', ' '))}: {_num(v)}</li>" for n, v in m.items()]
    out.append("</ul>")
    diag = info.get("diagnostics")
    if info.get("posterior") and diag:
        post = info["posterior"]
        out.append(
            f"<p>Posterior: collapsed NUTS, {post['chains']} chains &times; {post['draws']} "
            f"draws, {diag.get('divergences', 0)} divergences.</p>"
        )
        warnings = diag.get("warnings") or []
        if warnings:
            items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
            out.append(f'<ul class="warn">{items}</ul>')
        else:
            out.append("<p>Diagnostics: no problems found.</p>")
        cols = ("mean", "sd", "q5", "q95", "ess_bulk", "r_hat")
        rows = "".join(
            f"<tr><td>{_e(name)}</td>" + "".join(f"<td>{_num(row.get(c))}</td>" for c in cols)
            for name, row in (diag.get("summary") or {}).items()
        )
        out.append(
            "<details><summary>Posterior summary (components ordered by loc)</summary><table>"
            "<thead><tr><th>quantity</th>"
            + "".join(f"<th>{c}</th>" for c in cols)
            + f"</tr></thead><tbody>{rows}</tbody></table></details>"
        )
    else:
        out.append("<p>No posterior draws were saved with this model.</p>")
    out.append("</section>")
    return out


def _api(info: dict, rows: list[str]) -> list[str]:
    example = json.dumps({"rows": [[float(v) for v in row.split(", ")] for row in rows[:3]]})
    lim = info["limits"]
    return [
        "<section><h2>API</h2>",
        f"<pre>curl -s -X POST -H 'Content-Type: application/json' \\\n"
        f"     -d '{_e(example)}' <span id=\"origin\">http://HOST:PORT</span>/predict</pre>",
        f"<p>At most {lim['max_rows']} rows and {lim['max_body_bytes'] / 2**20:g} MiB per "
        "request. "
        '<a href="docs">Interactive docs</a> &middot; <a href="openapi.json">OpenAPI schema</a> '
        '&middot; <a href="model">model metadata (JSON)</a> &middot; '
        '<a href="healthz">health</a></p></section>',
    ]


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<main>
{body}
</main>
<script id="config" type="application/json">{config}</script>
<script>{script}</script>
</body>
</html>
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; color: #1a1a1a; background: #fafafa; }
main { max-width: 980px; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; }
.sub { color: #555; margin-top: 0; }
section { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .5rem 1rem 1rem;
  margin: 1rem 0; }
label { display: block; margin: .4rem 0 .2rem; }
.row { display: flex; gap: .6rem; align-items: center; flex-wrap: wrap; margin-top: .4rem; }
.row label { display: inline; margin: 0; }
textarea { width: 100%; box-sizing: border-box; font-family: ui-monospace, monospace; }
button { padding: .35rem 1rem; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #ddd; padding: .2rem .5rem; text-align: right;
  font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: .5rem 0; }
#status.error { color: #b00020; }
.warn { color: #8a4b00; }
pre { background: #f3f3f3; padding: .5rem; overflow-x: auto; }
"""

_SCRIPT = """
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("config").textContent);
  const form = document.getElementById("classify");
  const status = document.getElementById("status");
  const table = document.getElementById("result");
  const d = config.columns.length;
  document.getElementById("origin").textContent = window.location.origin;

  function token(t) {
    const v = Number(t);
    return t.trim() !== "" && Number.isFinite(v) ? v : t;  // the service names bad values
  }
  function parse(text) {
    if (d === 1) {
      return text.split(/[\\s,;]+/).filter((t) => t !== "").map((t) => [token(t)]);
    }
    return text.split(/\\n/).filter((l) => l.trim() !== "")
      .map((l) => l.trim().split(/[\\s,;]+/).map(token));
  }
  function cell(row, text, tag) {
    const c = document.createElement(tag || "td");
    c.textContent = text;
    row.appendChild(c);
    return c;
  }
  function show(rows, result) {
    const head = table.tHead, body = table.tBodies[0];
    head.textContent = "";
    body.textContent = "";
    const h = head.insertRow();
    ["row"].concat(config.columns, ["component"]).forEach((t) => cell(h, t, "th"));
    if (result.probabilities) {
      for (let j = 0; j < config.k; j++) cell(h, "p(" + j + ")", "th");
    }
    rows.forEach((values, i) => {
      const r = body.insertRow();
      r.className = "result-row";
      cell(r, String(i));
      values.forEach((v) => cell(r, String(v)));
      cell(r, String(result.labels[i])).className = "label";
      if (result.probabilities) {
        result.probabilities[i].forEach((p) => cell(r, p.toFixed(4)));
      }
    });
    table.hidden = false;
  }
  function fail(message) {
    table.hidden = true;
    status.className = "error";
    status.textContent = message;
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const rows = parse(document.getElementById("values").value);
    const temperature = Number(document.getElementById("temperature").value);
    const seedText = document.getElementById("seed").value.trim();
    const request = { rows: rows, temperature: temperature };
    if (seedText !== "") request.seed = token(seedText);
    status.className = "";
    status.textContent = "Classifying " + rows.length + " row(s) ...";
    let response, result;
    try {
      response = await fetch("predict", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(request),
      });
    } catch (err) {
      fail("The service could not be reached: " + err);
      return;
    }
    try {
      result = await response.json();
    } catch (err) {
      fail("Error " + response.status + ": the service's answer is not JSON.");
      return;
    }
    if (!response.ok) {
      fail("Error " + response.status + ": " + result.detail);
      return;
    }
    show(rows, result);
    status.textContent = "Classified " + rows.length + " row(s)" +
      (result.seed === null ? "." : " with seed " + result.seed + " (enter it to repeat).");
  });
})();
"""
