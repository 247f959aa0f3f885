/* qednano report viewer: runs -> problems -> attempts -> transcript -> grade.
 *
 * Reads the JSON embedded in <script type="application/json" id="qednano-data"> and builds
 * every node with createElement/textContent: model text is never parsed as HTML. Texts are
 * shown as Markdown with math (markdown.js: DOM nodes, KaTeX with trust off), or raw.
 * Navigation is by location.hash: #/run/C, #/problem/C/PID, #/attempt/C/AID.
 * Every class of the viewer starts with `qv-`, so its CSS never reaches KaTeX's own spans.
 */
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("qednano-data").textContent);
  hydrate(DATA);
  var app = document.getElementById("app");
  var filters = { min: "", max: "", flag: "", subset: "", math: "on" };
  var FILTER_KEYS = Object.keys(filters);
  var path = "";

  /* The page stores each text once (DATA.texts, referred to by index) and each run's attempts
   * once (DATA.runs), shared by the cells of its judges: put every cell's attempts back together. */
  function hydrate(data) {
    var T = data.texts;
    function txt(ref) { return typeof ref === "number" ? T[ref] : ref; }
    function calls(list) {
      return list.map(function (c) {
        return Object.assign({}, c, { text: txt(c.text), reasoning: txt(c.reasoning), messages: c.messages.map(function (m) {
          return typeof m.content === "number" ? Object.assign({}, m, { content: T[m.content] }) : m;
        }) });
      });
    }
    var runs = data.runs.map(function (list) {
      return list.map(function (a) { return Object.assign({}, a, { proof: txt(a.proof), transcript: calls(a.transcript) }); });
    });
    data.cells.forEach(function (cell) {
      cell.attempts = runs[cell.run].map(function (a) {
        var g = cell.grades[a.id];
        return Object.assign({}, a, { grade: g ? Object.assign({}, g, { explanation: txt(g.explanation), transcript: calls(g.transcript) }) : null });
      });
    });
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined) return;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = value;
      else node.setAttribute(key, String(value));
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function link(hash, text) {
    return el("a", { href: hash, text: text });
  }

  /* A text field: Markdown with math (markdown.js) when rendering is on, else the raw text. */
  function textBlock(text, cls) {
    var classes = "qv-text " + (cls ? "qv-" + cls : "");
    if (filters.math !== "on" || !window.qvMarkdown) return el("div", { class: classes + " qv-raw", text: text || "" });
    return el("div", { class: classes + " qv-md" }, window.qvMarkdown.render(text || ""));
  }

  function pct(value) {
    return value === null || value === undefined ? "–" : value.toFixed(1);
  }

  function scoreText(score) {
    if (!score || score.mean === null) return "–";
    return score.std === null ? pct(score.mean) : pct(score.mean) + " ± " + pct(score.std);
  }

  /* Points as people write them: whole numbers as they are, others to two decimals ("1.80 / 7"). */
  function num(value) {
    return Number.isInteger(value) ? String(value) : value.toFixed(2);
  }

  function points(grade) {
    if (!grade) return "not graded";
    if (grade.points === null) return "ungraded";
    return num(grade.points) + " / " + grade.max_points;
  }

  function human(attempt, problem) {
    return attempt.human_points === null || attempt.human_points === undefined ? "–"
      : num(attempt.human_points) + " / " + (problem.max_points || 7);
  }

  function hasHuman(attempts) {
    return attempts.some(function (a) { return a.human_points !== null && a.human_points !== undefined; });
  }

  function fractionOf(grade) {
    return grade && grade.points !== null && grade.max_points > 0 ? (100 * grade.points) / grade.max_points : null;
  }

  function enc(value) {
    return encodeURIComponent(value);
  }

  function problemOf(cell, pid) {
    var problems = DATA.problems[cell.benchmark] || {};
    return problems[pid] || { id: pid, statement: "", subset: "", category: "" };
  }

  function passes(score, flags, subset) {
    if (filters.min !== "" && (score === null || score < Number(filters.min))) return false;
    if (filters.max !== "" && (score === null || score > Number(filters.max))) return false;
    if (filters.flag === "(any)" && flags.length === 0) return false;
    if (filters.flag === "(none)" && flags.length > 0) return false;
    if (filters.flag && filters.flag[0] !== "(" && flags.indexOf(filters.flag) < 0) return false;
    if (filters.subset && subset !== filters.subset) return false;
    return true;
  }

  function filterBar(cell) {
    var flags = {};
    var subsets = {};
    cell.attempts.forEach(function (a) {
      (a.grade ? a.grade.flags : []).forEach(function (f) { flags[f] = true; });
      subsets[problemOf(cell, a.problem_id).subset || ""] = true;
    });
    function input(key, placeholder) {
      var node = el("input", { type: "number", min: 0, max: 100, placeholder: placeholder, id: "filter-" + key });
      node.value = filters[key];
      node.addEventListener("change", function () { setFilter(key, node.value); });
      return node;
    }
    function select(key, options) {
      var node = el("select", { id: "filter-" + key }, options.map(function (o) {
        return el("option", { value: o, text: o === "" ? "(all)" : o });
      }));
      node.value = filters[key];
      node.addEventListener("change", function () { setFilter(key, node.value); });
      return node;
    }
    var math = el("input", { type: "checkbox", id: "filter-math" });
    math.checked = filters.math === "on";
    math.addEventListener("change", function () { setFilter("math", math.checked ? "on" : "off"); });
    return el("div", { class: "qv-filters" }, [
      el("label", {}, ["score % from ", input("min", "0"), " to ", input("max", "100")]),
      el("label", {}, ["flag ", select("flag", ["", "(any)", "(none)"].concat(Object.keys(flags).sort()))]),
      el("label", {}, ["subset ", select("subset", [""].concat(Object.keys(subsets).filter(Boolean).sort()))]),
      el("label", {}, [math, " render math and Markdown"]),
    ]);
  }

  /* Filters live in the hash's query (#/run/0?flag=no_verdict&min=50), so a filtered view is a link. */
  function setFilter(key, value) {
    filters[key] = value;
    var query = FILTER_KEYS.filter(function (k) { return filters[k] !== "" && !(k === "math" && filters[k] === "on"); })
      .map(function (k) { return k + "=" + enc(filters[k]); }).join("&");
    location.hash = "#/" + path + (query ? "?" + query : "");
  }

  function readHash() {
    var hash = location.hash.replace(/^#\/?/, "");
    var cut = hash.indexOf("?");
    path = cut < 0 ? hash : hash.slice(0, cut);
    var query = cut < 0 ? "" : hash.slice(cut + 1);
    FILTER_KEYS.forEach(function (k) { filters[k] = k === "math" ? "on" : ""; });
    query.split("&").forEach(function (pair) {
      var eq = pair.indexOf("=");
      var key = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq));
      if (FILTER_KEYS.indexOf(key) >= 0) filters[key] = decodeURIComponent(eq < 0 ? "" : pair.slice(eq + 1));
    });
    return path.split("/");
  }

  function crumbs(parts) {
    var nodes = [link("#/", "runs")];
    parts.forEach(function (p) { nodes.push(" › ", p); });
    return el("nav", { class: "qv-crumbs" }, nodes);
  }

  function table(head, rows) {
    return el("table", { class: "qv-table" }, [
      el("thead", {}, [el("tr", {}, head.map(function (h) { return el("th", { text: h }); }))]),
      el("tbody", {}, rows.map(function (cells) {
        return el("tr", {}, cells.map(function (c) {
          return typeof c === "string" || typeof c === "number" ? el("td", { text: c }) : el("td", {}, [c]);
        }));
      })),
    ]);
  }

  function viewRuns() {
    var rows = DATA.cells.map(function (cell, i) {
      return [cell.benchmark, link("#/run/" + i, cell.model + " / " + cell.scaffold), cell.judge || "–",
        scoreText(cell.score), String(cell.runs), String(cell.ungraded + cell.pending), String(cell.flagged),
        pct(100 * cell.truncation_rate) + "%", Math.round(cell.output_tokens).toLocaleString("en"),
        "$" + cell.cost.toFixed(4)];
    });
    return [el("h2", { text: "Runs" }), table(["Benchmark", "System", "Judge", "Score %", "Runs", "Ungraded",
      "Flagged", "Truncated", "Tokens/problem", "Cost/problem"], rows)];
  }

  function viewRun(ci) {
    var cell = DATA.cells[ci];
    var byProblem = {};
    cell.attempts.forEach(function (a) { (byProblem[a.problem_id] = byProblem[a.problem_id] || []).push(a); });
    var rows = [];
    var withHuman = hasHuman(cell.attempts);
    Object.keys(byProblem).forEach(function (pid) {
      var attempts = byProblem[pid];
      var scores = attempts.map(function (a) { return fractionOf(a.grade); }).filter(function (s) { return s !== null; });
      var mean = scores.length ? scores.reduce(function (x, y) { return x + y; }, 0) / scores.length : null;
      var flags = [];
      attempts.forEach(function (a) { (a.grade ? a.grade.flags : []).forEach(function (f) { if (flags.indexOf(f) < 0) flags.push(f); }); });
      var problem = problemOf(cell, pid);
      if (!passes(mean, flags, problem.subset || "")) return;
      var row = [link("#/problem/" + ci + "/" + enc(pid), pid), problem.subset || "", problem.category || "", pct(mean),
        attempts.map(function (a) { return points(a.grade); }).join(", ")];
      if (withHuman) row.push(attempts.map(function (a) { return human(a, problem); }).join(", "));
      rows.push(row.concat([flags.join(", ")]));
    });
    return [crumbs([cell.benchmark + ": " + cell.model + " / " + cell.scaffold]), filterBar(cell),
      el("h2", { text: cell.model + " / " + cell.scaffold + " on " + cell.benchmark + " — " + scoreText(cell.score) + "%" }),
      el("p", { text: rows.length + " problems shown" }),
      table(["Problem", "Subset", "Category", "Mean %", "Points per run"].concat(withHuman ? ["Human points per run"] : [],
        ["Flags"]), rows)];
  }

  function viewProblem(ci, pid) {
    var cell = DATA.cells[ci];
    var problem = problemOf(cell, pid);
    var attempts = cell.attempts.filter(function (a) { return a.problem_id === pid; });
    var rows = attempts.filter(function (a) {
      return passes(fractionOf(a.grade), a.grade ? a.grade.flags : [], problem.subset || "");
    }).map(function (a) {
      return [link("#/attempt/" + ci + "/" + enc(a.id), a.id), points(a.grade), (a.grade ? a.grade.flags : []).join(", "),
        a.truncated ? "yes" : "", String(a.output_tokens), "$" + a.cost.toFixed(4),
        human(a, problem)];
    });
    var parts = [crumbs([link("#/run/" + ci, cell.model + " / " + cell.scaffold), pid]), filterBar(cell),
      el("h2", { text: pid }), el("h3", { text: "Problem" }), textBlock(problem.statement)];
    if (problem.answer) parts.push(el("h3", { text: "Answer" }), textBlock(problem.answer));
    if (problem.solution) parts.push(el("details", {}, [el("summary", { text: "Reference solution" }), textBlock(problem.solution)]));
    if (problem.rubric) parts.push(el("details", {}, [el("summary", { text: "Rubric" }), textBlock(problem.rubric)]));
    parts.push(el("h3", { text: "Attempts" }),
      table(["Attempt", "Points", "Flags", "Truncated", "Output tokens", "Cost", "Human points"], rows));
    return parts;
  }

  function completion(c, i) {
    var messages = (c.messages || []).map(function (m) {
      var content = typeof m.content === "string" ? m.content : JSON.stringify(m.content);
      return el("div", { class: "qv-message qv-role-" + String(m.role).replace(/[^a-z]/g, "") }, [
        el("div", { class: "qv-role", text: m.role }), textBlock(content)]);
    });
    var meta = [c.model, c.input_tokens + " in / " + c.output_tokens + " out tokens", "$" + Number(c.cost).toFixed(4),
      "finish: " + (c.finish_reason || "–")];
    if (c.truncated) meta.push("TRUNCATED");
    if (c.cached) meta.push("from cache");
    var body = [el("div", { class: "qv-meta", text: meta.join(" · ") }),
      el("details", {}, [el("summary", { text: "Messages (" + messages.length + ")" })].concat(messages))];
    if (c.reasoning) body.push(el("details", {}, [el("summary", { text: "Reasoning" }), textBlock(c.reasoning, "reasoning")]));
    body.push(el("div", { class: "qv-role", text: "output" }), textBlock(c.text, "output"));
    return el("section", { class: "qv-call", id: "call-" + i }, [el("h4", { text: "Call " + (i + 1) + ": " + c.step })].concat(body));
  }

  function viewAttempt(ci, aid) {
    var cell = DATA.cells[ci];
    var attempt = cell.attempts.filter(function (a) { return a.id === aid; })[0];
    if (!attempt) return [crumbs([]), el("p", { text: "No attempt " + aid })];
    var problem = problemOf(cell, attempt.problem_id);
    var grade = attempt.grade;
    var parts = [crumbs([link("#/run/" + ci, cell.model + " / " + cell.scaffold),
      link("#/problem/" + ci + "/" + enc(attempt.problem_id), attempt.problem_id), aid]),
      el("h2", { text: "Attempt " + aid + " — " + points(grade) +
        (hasHuman([attempt]) ? " (human: " + human(attempt, problem) + ")" : "") }),
      el("details", {}, [el("summary", { text: "Problem" }), textBlock(problem.statement)]),
      el("h3", { text: "Proof" }), textBlock(attempt.proof, "proof"),
      el("h3", { text: "Grade" })];
    if (grade) {
      parts.push(el("div", { class: "qv-grade", id: "grade" }, [
        el("div", { class: "qv-meta", text: "judge " + grade.judge + " · points " + points(grade) +
          (hasHuman([attempt]) ? " · human points " + human(attempt, problem) : "") +
          (grade.flags.length ? " · flags: " + grade.flags.join(", ") : "") }),
        textBlock(grade.explanation, "explanation"),
        el("details", {}, [el("summary", { text: "Judge transcript (" + grade.transcript.length + " calls)" })]
          .concat(grade.transcript.map(completion)))]));
    } else {
      parts.push(el("p", { text: "Not graded by this judge yet." }));
    }
    parts.push(el("h3", { text: "Transcript (" + attempt.transcript.length + " calls)" }),
      el("div", { id: "transcript" }, attempt.transcript.map(completion)));
    return parts;
  }

  function route() {
    var parts = readHash();
    var view;
    try {
      if (parts[0] === "run" && DATA.cells[+parts[1]]) view = viewRun(+parts[1]);
      else if (parts[0] === "problem" && DATA.cells[+parts[1]]) view = viewProblem(+parts[1], decodeURIComponent(parts.slice(2).join("/")));
      else if (parts[0] === "attempt" && DATA.cells[+parts[1]]) view = viewAttempt(+parts[1], decodeURIComponent(parts.slice(2).join("/")));
      else view = viewRuns();
    } catch (err) {
      view = [el("p", { class: "qv-error", text: "viewer error: " + err })];
    }
    app.replaceChildren.apply(app, view);
    app.setAttribute("data-view", parts[0] || "runs");
  }

  document.title = DATA.title;
  document.getElementById("title").textContent = DATA.title;
  window.addEventListener("hashchange", route);
  route();
})();
