// Reading README.md's examples: its code fences (with their README line numbers), the shell
// commands of a ```sh fence with the `# …` expected-output lines under each, the print() lines of a
// ```python fence with their `# …` comments, and the expected-output pattern matcher. One parser and
// one matcher for every README test (test/readme.test.ts, test/readme-in-order.test.ts).
//
// Expected-output comments are patterns: `…` is any text (inside a JSON string: any string
// content), `{…}` is any JSON object; everything else must match exactly. A comment may end with a
// parenthesised remark after two or more spaces (checked by the test that knows the remark).

import path from 'node:path';

export const ROOT = path.resolve(__dirname, '../../..');
export const README = path.join(ROOT, 'README.md');
/** Where the README's examples send their requests. */
export const README_HOST = '127.0.0.1:8080';
export const README_URL = `http://${README_HOST}`;

export interface Fence {
  lang: string;
  body: string;
  /** 1-based line number of the opening fence in README.md. */
  line: number;
  /** The `## ` section the fence is in ('' before the first). */
  section: string;
}

export interface Section {
  text: string;
  /** 1-based line number of the `## title` line. */
  line: number;
}

/** The text of the `## title` section (up to the next `## ` heading), with its first line number. */
export function section(markdown: string, title: string): Section {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => l.trim() === `## ${title}`);
  if (start < 0) throw new Error(`README.md has no "## ${title}" section`);
  let end = lines.findIndex((l, i) => i > start && /^## /.test(l));
  if (end < 0) end = lines.length;
  return { text: lines.slice(start, end).join('\n'), line: start + 1 };
}

/** The code fences of a section (or, given the whole README as a section at line 1, of all of it). */
export function fences(sec: Section): Fence[] {
  const out: Fence[] = [];
  const lines = sec.text.split('\n');
  let heading = '';
  for (let i = 0; i < lines.length; i++) {
    const h = /^## (.*)$/.exec(lines[i]);
    if (h) heading = h[1].trim();
    const open = /^```(\S*)\s*$/.exec(lines[i]);
    if (!open) continue;
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !/^```\s*$/.test(lines[j])) body.push(lines[j++]);
    if (j >= lines.length) throw new Error(`unterminated code fence at README.md:${sec.line + i}`);
    out.push({ lang: open[1], body: body.join('\n'), line: sec.line + i, section: heading });
    i = j;
  }
  return out;
}

/** Every code fence of the README, in document order. */
export function allFences(markdown: string): Fence[] {
  return fences({ text: markdown, line: 1 });
}

export interface ShellExample {
  /** The command as written in the README (possibly several lines). */
  command: string;
  /** README.md line of the command's first line. */
  line: number;
  /** The expected-output lines (without `# `) that follow the command, if any. */
  expected?: string[];
}

/** True while a shell quote opened in `text` is still open (single/double quotes, backslashes). */
export function quoteOpen(text: string): boolean {
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote === "'") {
      if (c === "'") quote = undefined;
    } else if (c === '\\') {
      i++;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
    } else if (c === "'" || c === '"') {
      quote = c;
    }
  }
  return quote !== undefined;
}

/**
 * The commands of one ```sh block, each with the `# ` comment lines that follow it. A command is a
 * line that is not a comment, continued while a quote is open or the line ends in a backslash.
 * `onlyCurl` refuses any command that does not start with curl.
 */
export function shellExamples(fence: Fence, opts: { onlyCurl?: boolean } = {}): ShellExample[] {
  const out: ShellExample[] = [];
  const lines = fence.body.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const where = `README.md:${fence.line + 1 + i}`;
    if (line.trim() === '') continue;
    if (line.startsWith('# ') || line === '#') {
      const last = out[out.length - 1];
      if (!last) throw new Error(`${where}: expected-output comment before any command: ${line}`);
      (last.expected ??= []).push(line.slice(2));
      continue;
    }
    if (opts.onlyCurl && !/^curl\s/.test(line)) throw new Error(`${where}: a line that is neither a curl command nor a "# " comment: ${line}`);
    const first = i;
    let command = line;
    while (quoteOpen(command) || /\\$/.test(command)) {
      if (++i >= lines.length) throw new Error(`${where}: command not terminated inside its block: ${command}`);
      command += `\n${lines[i]}`;
    }
    out.push({ command, line: fence.line + 1 + first });
  }
  return out;
}

/** A streaming command, which a reader stops (Ctrl-C) once it has shown its lines. */
export const isStreamingCommand = (command: string): boolean => /^curl\s+(?:-\S*N\S*\s)/.test(command);

// ---------------------------------------------------------------------------------------------
// Expected-output patterns

const JSON_STRING = String.raw`"(?:[^"\\]|\\.)*"`;

/** A regex source for JSON object text nested up to `depth` levels of objects/arrays. */
function jsonObjectSource(depth: number): string {
  const inner = (d: number): string =>
    d === 0
      ? `(?:[^{}\\[\\]"]|${JSON_STRING})`
      : `(?:[^{}\\[\\]"]|${JSON_STRING}|\\{${inner(d - 1)}*\\}|\\[${inner(d - 1)}*\\])`;
  return `\\{${inner(depth)}*\\}`;
}
const JSON_OBJECT = jsonObjectSource(5);

export const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

export interface Pattern {
  source: string;
  regex: RegExp;
  /** A parenthesised remark after the pattern, e.g. `a second call has no "succeeded"`. */
  remark?: string;
}

/** Index just past the first balanced JSON value in `text` (strings honoured), or -1. */
function endOfFirstValue(text: string): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
    } else if (c === '{' || c === '[') {
      depth++;
    } else if (c === '}' || c === ']') {
      if (--depth === 0) return i + 1;
    }
  }
  return -1;
}

/** Turns an expected-output comment into an anchored regex; `{…}` groups are captured. */
export function compilePattern(comment: string): Pattern {
  let source = comment;
  let remark: string | undefined;
  const end = endOfFirstValue(comment);
  if (end > 0 && end < comment.length) {
    const rest = /^\s{2,}\((.+)\)\s*$/.exec(comment.slice(end));
    if (rest) {
      source = comment.slice(0, end);
      remark = rest[1];
    }
  }
  let re = '';
  let inString = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (!inString && source.startsWith('{…}', i)) {
      re += `(${JSON_OBJECT})`;
      i += 2;
    } else if (c === '…') {
      re += inString ? String.raw`(?:[^"\\]|\\.)*` : String.raw`[\s\S]*?`;
    } else {
      if (c === '"') inString = !inString;
      else if (c === '\\' && inString) {
        re += escapeRegex(source.slice(i, i + 2));
        i++;
        continue;
      }
      re += escapeRegex(c);
    }
  }
  return { source, regex: new RegExp(`^${re}\\n?$`), remark };
}

/** Why `output` does not match `pattern`, or undefined when it does. */
export function mismatch(pattern: Pattern, output: string): string | undefined {
  const m = pattern.regex.exec(output);
  if (!m) return `output does not match the pattern`;
  for (const group of m.slice(1)) {
    let value: unknown;
    try {
      value = JSON.parse(group);
    } catch {
      return `the text standing for {…} is not JSON: ${group}`;
    }
    if (!value || typeof value !== 'object' || Array.isArray(value)) return `the text standing for {…} is not a JSON object: ${group}`;
  }
  return undefined;
}

/** Why the output lines do not match the expected lines (one pattern per line), or undefined. */
export function linesMismatch(expected: string[], actual: string[]): string | undefined {
  if (actual.length !== expected.length) return `${actual.length} output lines, the README shows ${expected.length}`;
  for (let i = 0; i < expected.length; i++) {
    const why = mismatch(compilePattern(expected[i]), actual[i]);
    if (why) return `line ${i + 1}: ${why}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Python

/**
 * Runs a Python snippet (sys.argv[1]) with print() recording each call as one JSON line
 * [[type name, str()] per argument, the text print() would write], flushed at once so that a
 * streaming snippet's lines arrive while it runs. The snippet's own code is otherwise untouched.
 */
export const PRINT_RECORDER = [
  'import builtins, json, sys',
  'source = sys.argv[1]',
  'def recording_print(*args, sep=" ", end="\\n", file=None, flush=False):',
  '    args_ = [[type(a).__name__, str(a)] for a in args]',
  '    sys.stdout.write(json.dumps([args_, sep.join(a[1] for a in args_)]) + "\\n")',
  '    sys.stdout.flush()',
  'scope = {"__name__": "__main__", "__builtins__": builtins, "print": recording_print}',
  'exec(compile(source, "<README>", "exec"), scope)',
].join('\n');

export interface PrintExpectation {
  line: number;
  statement: string;
  comment: string;
}

/** Every `print(...)  # comment` line of a snippet; a print without a comment is an error unless `allowBare`. */
export function printExpectations(fence: Fence, opts: { allowBare?: boolean } = {}): PrintExpectation[] {
  const out: PrintExpectation[] = [];
  fence.body.split('\n').forEach((l, i) => {
    if (!/^\s*print\(/.test(l)) return;
    const m = /^(.*\S)\s+#\s?(.*)$/.exec(l);
    if (!m) {
      if (opts.allowBare) return;
      throw new Error(`README.md:${fence.line + 1 + i}: print() without an expected-output comment: ${l}`);
    }
    out.push({ line: fence.line + 1 + i, statement: m[1], comment: m[2].trim() });
  });
  return out;
}

/**
 * Why one recorded print() call does not match its comment, or undefined. A comment starting
 * "a string" stands for a revision: one str argument of decimal digits; any other comment is a
 * pattern for the printed text.
 */
export function printMismatch(comment: string, call: [[string, string][], string]): string | undefined {
  const [args, text] = call;
  if (/^a string\b/.test(comment)) {
    if (args.length !== 1 || args[0][0] !== 'str') return `printed ${JSON.stringify(args)}, the comment says one string`;
    if (!/^\d+$/.test(text)) return `printed ${JSON.stringify(text)}, expected a revision of digits`;
    return undefined;
  }
  const why = mismatch(compilePattern(comment), text);
  return why && `printed ${JSON.stringify(text)}, expected ${JSON.stringify(comment)}: ${why}`;
}
