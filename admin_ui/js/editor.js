// The code editor: a transparent <textarea> (which does the typing, the
// selection, undo and the clipboard) over a <pre> holding the same text
// highlighted, with a gutter of line numbers. Tab and Shift+Tab indent and
// dedent, Enter keeps the indentation; Escape then Tab leaves the editor.
// Diagnostics mark their lines (gutter, background, message at the line's end)
// and follow the lines when text is inserted or removed above them.
import { h } from "./dom.js";
import { tokenize } from "./rust.js";

const INDENT = "    ";

export class CodeEditor {
  constructor({ value = "", label = "Handler code (Rust)", onChange = null } = {}) {
    this.onChange = onChange;
    this.diagnostics = []; // [{line, column, level, message, stale}]
    this.escaped = false;
    this.gutter = h("div", { class: "ce-gutter", "aria-hidden": "true" });
    this.lines = h("div", { class: "ce-lines" });
    this.highlight = h("pre", { class: "ce-highlight", "aria-hidden": "true" }, this.lines);
    this.textarea = h("textarea", {
      class: "ce-input",
      spellcheck: "false",
      autocapitalize: "off",
      autocomplete: "off",
      autocorrect: "off",
      wrap: "off",
      "aria-label": label,
      "aria-multiline": "true",
      "data-testid": "code-input",
    });
    this.textarea.value = value;
    this.body = h("div", { class: "ce-body" }, this.highlight, this.textarea);
    this.root = h("div", { class: "code-editor", "data-testid": "code-editor" }, this.gutter, this.body);
    this.previousLines = value.split("\n");
    this.textarea.addEventListener("input", () => this._changed());
    this.textarea.addEventListener("scroll", () => this._sync());
    this.textarea.addEventListener("keydown", (event) => this._key(event));
    this.render();
  }

  get value() {
    return this.textarea.value;
  }

  /** Replace the whole text (not an edit: diagnostics are dropped). */
  set value(text) {
    this.textarea.value = text;
    this.previousLines = text.split("\n");
    this.diagnostics = [];
    this.render();
  }

  focus() {
    this.textarea.focus();
  }

  /** [{line, column, level, message}] of cargo; lines are 1-based; others (no line) are ignored here. */
  setDiagnostics(list) {
    this.diagnostics = (list || [])
      .filter((d) => Number.isInteger(d.line) && d.line >= 1)
      .map((d) => ({ line: d.line, column: d.column || 1, level: d.level === "warning" ? "warning" : "error", message: String(d.message || ""), stale: false }));
    this.render();
  }

  /** Put the caret at line:column and scroll it into view. */
  goTo(line, column = 1) {
    const lines = this.textarea.value.split("\n");
    line = Math.max(1, Math.min(line, lines.length));
    let offset = 0;
    for (let i = 0; i < line - 1; i++) offset += lines[i].length + 1;
    offset += Math.max(0, Math.min(column - 1, lines[line - 1].length));
    this.textarea.focus();
    this.textarea.setSelectionRange(offset, offset);
    const lineHeight = this._lineHeight();
    const top = (line - 1) * lineHeight;
    const view = this.textarea.clientHeight;
    if (top < this.textarea.scrollTop || top > this.textarea.scrollTop + view - 2 * lineHeight) {
      this.textarea.scrollTop = Math.max(0, top - view / 3);
    }
    this._sync();
  }

  _lineHeight() {
    return parseFloat(getComputedStyle(this.textarea).lineHeight) || 20;
  }

  _changed() {
    const now = this.textarea.value.split("\n");
    this._shiftDiagnostics(this.previousLines, now);
    this.previousLines = now;
    this.render();
    if (this.onChange) this.onChange(this.textarea.value);
  }

  /** Lines added or removed above a diagnostic move it; one inside the edit goes stale. */
  _shiftDiagnostics(before, after) {
    if (!this.diagnostics.length) return;
    let prefix = 0;
    const shortest = Math.min(before.length, after.length);
    while (prefix < shortest && before[prefix] === after[prefix]) prefix++;
    let suffix = 0;
    while (
      suffix < shortest - prefix &&
      before[before.length - 1 - suffix] === after[after.length - 1 - suffix]
    ) suffix++;
    const delta = after.length - before.length;
    for (const d of this.diagnostics) {
      const index = d.line - 1;
      if (index < prefix) continue;
      if (index >= before.length - suffix) d.line += delta;
      else d.stale = true;
    }
    this.diagnostics = this.diagnostics.filter((d) => d.line >= 1 && d.line <= after.length);
  }

  render() {
    const text = this.textarea.value;
    const byLine = new Map();
    for (const d of this.diagnostics) {
      if (!byLine.has(d.line)) byLine.set(d.line, []);
      byLine.get(d.line).push(d);
    }
    const lineNodes = [];
    let current = [];
    const endLine = () => {
      lineNodes.push(current);
      current = [];
    };
    for (const [kind, token] of tokenize(text)) {
      const parts = token.split("\n");
      parts.forEach((part, index) => {
        if (index > 0) endLine();
        if (!part) return;
        if (kind === "text") current.push(document.createTextNode(part));
        else {
          const span = document.createElement("span");
          span.className = "tk-" + kind;
          span.textContent = part;
          current.push(span);
        }
      });
    }
    endLine();
    const fragment = document.createDocumentFragment();
    const gutter = document.createDocumentFragment();
    lineNodes.forEach((nodes, index) => {
      const number = index + 1;
      const line = document.createElement("div");
      line.className = "ce-line";
      if (nodes.length) line.append(...nodes);
      else line.append(document.createTextNode(" "));
      const mark = document.createElement("div");
      mark.textContent = String(number);
      const found = byLine.get(number);
      if (found) {
        const level = found.some((d) => d.level === "error") ? "error" : "warning";
        const first = found.find((d) => d.level === level);
        line.classList.add("ce-line-" + level);
        line.dataset.diagnostic = level;
        const note = document.createElement("span");
        note.className = "ce-diag";
        note.textContent = `${level}: ${first.message}` + (found.length > 1 ? ` (+${found.length - 1} more)` : "") + (first.stale ? " (line edited since)" : "");
        line.append(note);
        mark.className = "ce-mark-" + level;
        mark.title = found.map((d) => `${d.level} ${d.line}:${d.column}: ${d.message}`).join("\n");
        mark.dataset.line = String(number);
      }
      fragment.append(line);
      gutter.append(mark);
    });
    this.lines.replaceChildren(fragment);
    this.gutter.replaceChildren(gutter);
    this._sync();
  }

  _sync() {
    this.highlight.scrollTop = this.textarea.scrollTop;
    this.highlight.scrollLeft = this.textarea.scrollLeft;
    this.gutter.scrollTop = this.textarea.scrollTop;
  }

  _key(event) {
    if (event.key === "Escape") {
      this.escaped = true; // the next Tab moves the focus on, as in any form
      return;
    }
    if (event.key === "Tab" && !event.ctrlKey && !event.metaKey && !event.altKey) {
      if (this.escaped) {
        this.escaped = false;
        return;
      }
      event.preventDefault();
      if (event.shiftKey) this._dedent();
      else this._indent();
      return;
    }
    this.escaped = false;
    if (event.key === "Enter" && !event.ctrlKey && !event.metaKey && !event.altKey && !event.shiftKey) {
      event.preventDefault();
      const ta = this.textarea;
      const before = ta.value.slice(0, ta.selectionStart);
      const lineStart = before.lastIndexOf("\n") + 1;
      let indent = /^[ \t]*/.exec(before.slice(lineStart))[0];
      const last = before.trimEnd().slice(-1);
      if (last === "{" || last === "(" || last === "[") indent += INDENT;
      this._insert("\n" + indent);
    }
  }

  /** Insert at the selection as typing would (so undo works). */
  _insert(text) {
    const ta = this.textarea;
    ta.focus();
    let done = false;
    try {
      done = document.execCommand("insertText", false, text);
    } catch {
      done = false;
    }
    if (!done) {
      ta.setRangeText(text, ta.selectionStart, ta.selectionEnd, "end");
      ta.dispatchEvent(new Event("input", { bubbles: true }));
    }
  }

  _selectedLines() {
    const ta = this.textarea;
    const value = ta.value;
    const start = value.lastIndexOf("\n", ta.selectionStart - 1) + 1;
    let end = ta.selectionEnd;
    if (end > ta.selectionStart && value[end - 1] === "\n") end--;
    const lineEnd = value.indexOf("\n", end);
    return [start, lineEnd < 0 ? value.length : lineEnd];
  }

  _indent() {
    const ta = this.textarea;
    const multiline = ta.value.slice(ta.selectionStart, ta.selectionEnd).includes("\n");
    if (!multiline) {
      const lineStart = ta.value.lastIndexOf("\n", ta.selectionStart - 1) + 1;
      const column = ta.selectionStart - lineStart;
      this._insert(" ".repeat(INDENT.length - (column % INDENT.length)));
      return;
    }
    const [start, end] = this._selectedLines();
    const block = ta.value.slice(start, end).split("\n").map((l) => (l ? INDENT + l : l)).join("\n");
    this._replaceBlock(start, end, block);
  }

  _dedent() {
    const ta = this.textarea;
    const [start, end] = this._selectedLines();
    const block = ta.value
      .slice(start, end)
      .split("\n")
      .map((l) => l.replace(/^( {1,4}|\t)/, ""))
      .join("\n");
    if (block !== ta.value.slice(start, end)) this._replaceBlock(start, end, block);
  }

  _replaceBlock(start, end, block) {
    const ta = this.textarea;
    ta.setSelectionRange(start, end);
    this._insert(block);
    ta.setSelectionRange(start, start + block.length);
  }
}
