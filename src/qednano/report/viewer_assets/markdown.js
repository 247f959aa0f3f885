/* qednano report viewer: Markdown with LaTeX math, built as DOM nodes.
 *
 * window.qvMarkdown.render(text) returns the nodes of `text` read as Markdown: headings,
 * emphasis, inline and fenced code, lists, block quotes, rules and paragraphs (each line
 * break kept), with math typeset by KaTeX (trust off). Nothing is ever parsed as HTML:
 * every node is made with createElement and filled with textContent, so a tag in a
 * proof shows as text.
 *
 * Math is cut out first, so `*` and `_` inside it are never emphasis: `$$..$$`, `\[..\]`,
 * `\(..\)`, `\begin{align}..\end{align}` (and the other display environments below), and
 * `$..$` by the rule Pandoc uses: a `$` opens math only when a non-space follows it, and
 * the next `$` in the same paragraph closes it only when a non-space precedes it and no
 * digit follows. Any other `$` (money: "$5 and $10") is a plain dollar sign.
 */
(function () {
  "use strict";
  var OPEN = "\uE000";
  var CLOSE = "\uE001";
  var ENVS = ["equation", "align", "alignat", "gather", "multline", "eqnarray", "flalign", "displaymath", "math"];

  function el(tag, cls, children) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    (children || []).forEach(function (c) { node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }

  function space(ch) {
    return ch === undefined || ch === "" || /\s/.test(ch);
  }

  /* The index of the `$` closing an inline math span opened at `i`, or -1 (a plain dollar). */
  function inlineClose(src, i) {
    if (space(src[i + 1]) || src[i + 1] === "$") return -1;
    for (var j = i + 1; j < src.length; j++) {
      var ch = src[j];
      if (ch === "\\") { j++; continue; }
      if (ch === "\n" && /^\n[ \t]*\n/.test(src.slice(j, j + 40))) return -1;
      if (ch === "$") return !space(src[j - 1]) && !/[0-9]/.test(src[j + 1] || "") ? j : -1;
    }
    return -1;
  }

  /* Math spans replaced by OPEN index CLOSE; code left as it is, so math inside code stays text. */
  function protect(src) {
    src = src.replace(/[\uE000\uE001]/g, "\uFFFD");
    var out = "";
    var math = [];
    var i = 0;
    function put(tex, display, source, end) {
      out += OPEN + math.length + CLOSE;
      math.push({ tex: tex, display: display, source: source });
      i = end;
    }
    while (i < src.length) {
      var ch = src[i];
      if ((i === 0 || src[i - 1] === "\n") && src.startsWith("```", i)) {
        var fence = src.indexOf("\n```", i + 3);
        var stop = fence < 0 ? src.length : src.indexOf("\n", fence + 4);
        if (stop < 0) stop = src.length;
        out += src.slice(i, stop);
        i = stop;
        continue;
      }
      if (ch === "`") {
        var tick = src.indexOf("`", i + 1);
        var line = src.indexOf("\n", i + 1);
        if (tick > 0 && (line < 0 || tick < line)) {
          out += src.slice(i, tick + 1);
          i = tick + 1;
          continue;
        }
      }
      if (ch === "\\") {
        var next = src[i + 1];
        if (next === "[" || next === "(") {
          var right = src.indexOf(next === "[" ? "\\]" : "\\)", i + 2);
          if (right >= 0) { put(src.slice(i + 2, right), next === "[", src.slice(i, right + 2), right + 2); continue; }
        }
        var env = /^\\begin\{([a-zA-Z]+)(\*?)\}/.exec(src.slice(i, i + 40));
        if (env && ENVS.indexOf(env[1]) >= 0) {
          var endTag = "\\end{" + env[1] + env[2] + "}";
          var end = src.indexOf(endTag, i);
          if (end >= 0) {
            var body = src.slice(i, end + endTag.length);
            put(body, true, body, end + endTag.length);
            continue;
          }
        }
        if (next === "$") { out += "$"; i += 2; continue; }
        out += src.slice(i, i + 2);
        i += 2;
        continue;
      }
      if (ch === "$") {
        if (src[i + 1] === "$") {
          var close = src.indexOf("$$", i + 2);
          if (close > i + 2) { put(src.slice(i + 2, close), true, src.slice(i, close + 2), close + 2); continue; }
          out += "$$";
          i += 2;
          continue;
        }
        var shut = inlineClose(src, i);
        if (shut > 0) { put(src.slice(i + 1, shut), false, src.slice(i, shut + 1), shut + 1); continue; }
      }
      out += ch;
      i += 1;
    }
    return { text: out, math: math };
  }

  function restore(text, math) {
    return text.replace(/\uE000(\d+)\uE001/g, function (_, n) { return math[+n].source; });
  }

  function mathNode(m) {
    var node = el("span", m.display ? "qv-math qv-display" : "qv-math");
    if (window.katex) {
      try {
        window.katex.render(m.tex, node, { displayMode: m.display, throwOnError: false, trust: false, strict: "ignore" });
        return node;
      } catch (err) {
        node.replaceChildren();
      }
    }
    node.textContent = m.source;
    return node;
  }

  var INLINE = [
    { re: /\uE000(\d+)\uE001/g, make: function (m, math) { return mathNode(math[+m[1]]); } },
    { re: /`([^`\n]+)`/g, make: function (m, math) { return el("code", "qv-code", [restore(m[1], math)]); } },
    { re: /\\([*_`#~\\])/g, make: function (m) { return m[1]; } },
    { re: /\*\*(?=\S)([\s\S]*?\S)\*\*/g, tag: "strong" },
    { re: /(?:^|(?<=[^A-Za-z0-9_]))__(?=\S)([\s\S]*?\S)__(?![A-Za-z0-9_])/g, tag: "strong" },
    { re: /\*(?=[^\s*])([\s\S]*?[^\s*])\*/g, tag: "em" },
    { re: /(?:^|(?<=[^A-Za-z0-9_]))_(?=[^\s_])([\s\S]*?[^\s_])_(?![A-Za-z0-9_])/g, tag: "em" },
    { re: /~~(?=\S)([\s\S]*?\S)~~/g, tag: "del" },
  ];

  /* Inline nodes of one block's text: the earliest construct wins, ties in the order above. */
  function inline(text, math) {
    var nodes = [];
    var pos = 0;
    var found = INLINE.map(function () { return undefined; });  // each rule's next match, kept while ahead
    while (pos < text.length) {
      var best = null;
      var rule = null;
      INLINE.forEach(function (r, k) {
        if (found[k] === undefined || (found[k] !== null && found[k].index < pos)) {
          r.re.lastIndex = pos;
          found[k] = r.re.exec(text);
        }
        var m = found[k];
        if (m && (best === null || m.index < best.index)) { best = m; rule = r; }
      });
      if (best === null) break;
      if (best.index > pos) lines(text.slice(pos, best.index), nodes);
      nodes.push(rule.tag ? el(rule.tag, null, inline(best[1], math)) : rule.make(best, math));
      pos = best.index + best[0].length;
    }
    if (pos < text.length) lines(text.slice(pos), nodes);
    return nodes;
  }

  function lines(text, nodes) {
    text.split("\n").forEach(function (part, i) {
      if (i > 0) nodes.push(el("br"));
      if (part) nodes.push(part);
    });
  }

  var HEADING = /^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/;
  var RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
  var ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])[ \t]+(.*)$/;
  var QUOTE = /^ {0,3}>[ \t]?(.*)$/;
  var FENCE = /^ {0,3}```/;

  function blank(line) {
    return /^\s*$/.test(line);
  }

  function starts(line) {
    return HEADING.test(line) || RULE.test(line) || ITEM.test(line) || QUOTE.test(line) || FENCE.test(line);
  }

  function ordered(marker) {
    return /\d/.test(marker);
  }

  /* Block nodes of text whose math was cut out by protect(). */
  function blocks(all, math) {
    var out = [];
    var i = 0;
    while (i < all.length) {
      var line = all[i];
      var m;
      if (blank(line)) { i++; continue; }
      if (FENCE.test(line)) {
        var code = [];
        for (i++; i < all.length && !FENCE.test(all[i]); i++) code.push(all[i]);
        i++;
        out.push(el("pre", "qv-code", [el("code", null, [restore(code.join("\n"), math)])]));
      } else if ((m = HEADING.exec(line))) {
        out.push(el("h" + Math.min(6, m[1].length + 3), "qv-md-heading", inline(m[2], math)));
        i++;
      } else if (RULE.test(line)) {
        out.push(el("hr", "qv-rule"));
        i++;
      } else if (QUOTE.test(line)) {
        var quoted = [];
        for (; i < all.length && (m = QUOTE.exec(all[i])); i++) quoted.push(m[1]);
        out.push(el("blockquote", "qv-quote", blocks(quoted, math)));
      } else if ((m = ITEM.exec(line))) {
        i = list(all, i, math, out);
      } else {
        var para = [line];
        for (i++; i < all.length && !blank(all[i]) && !starts(all[i]); i++) para.push(all[i]);
        out.push(el("p", null, inline(para.join("\n"), math)));
      }
    }
    return out;
  }

  /* One list from line i: items of the same kind, their indented (or lazy) continuation lines. */
  function list(all, i, math, out) {
    var first = ITEM.exec(all[i]);
    var isOrdered = ordered(first[2]);
    var node = el(isOrdered ? "ol" : "ul", "qv-list");
    if (isOrdered && parseInt(first[2], 10) !== 1) node.setAttribute("start", String(parseInt(first[2], 10)));
    while (i < all.length) {
      var m = ITEM.exec(all[i]);
      if (!m || ordered(m[2]) !== isOrdered) break;
      var indent = m[1].length + m[2].length + 1;
      var body = [m[3]];
      for (i++; i < all.length; i++) {
        var line = all[i];
        if (blank(line)) {
          var after = all.slice(i + 1).find(function (l) { return !blank(l); });
          if (after === undefined || !/^\s{2,}\S/.test(after)) break;
          body.push("");
        } else if (/^\s{2,}\S/.test(line)) {
          body.push(line.slice(Math.min(indent, line.length - line.trimStart().length)));
        } else if (!starts(line) && !blank(all[i - 1])) {
          body.push(line);
        } else {
          break;
        }
      }
      var content = blocks(body, math);
      if (content.length === 1 && content[0].tagName === "P") content = Array.prototype.slice.call(content[0].childNodes);
      node.appendChild(el("li", null, content));
      while (i < all.length && blank(all[i])) {
        var next = all.slice(i).find(function (l) { return !blank(l); });
        var n = next === undefined ? null : ITEM.exec(next);
        if (!n || ordered(n[2]) !== isOrdered) { out.push(node); return i; }
        i++;
      }
    }
    out.push(node);
    return i;
  }

  function render(text) {
    var cut = protect(String(text || ""));
    return blocks(cut.text.split("\n"), cut.math);
  }

  window.qvMarkdown = { render: render, protect: protect };
})();
