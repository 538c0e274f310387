// How a value is shown: as text, as pretty JSON or YAML when it parses, as a hex dump when it is binary;
// and the line diff of two values, for the conflict view and the history.

export type ViewMode = 'text' | 'json' | 'yaml' | 'hex';

const decoder = new TextDecoder('utf-8', { fatal: true });

/** The value's text, or undefined when its bytes are not UTF-8. */
export function textOf(bytes: Uint8Array): string | undefined {
  try {
    return decoder.decode(bytes);
  } catch {
    return undefined;
  }
}

export function parseJson(text: string | undefined): { ok: true; value: unknown } | { ok: false } {
  if (text === undefined || !/^\s*[[{"\d\-tfn]/.test(text)) return { ok: false };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

/** The views that make sense for a value, the first being the one to open with. */
export function viewsFor(bytes: Uint8Array): ViewMode[] {
  const text = textOf(bytes);
  if (text === undefined) return ['hex'];
  const parsed = parseJson(text);
  // A bare number or string parses too, but reads better as the text it is.
  if (parsed.ok && typeof parsed.value === 'object' && parsed.value !== null) return ['json', 'yaml', 'text', 'hex'];
  return ['text', 'hex'];
}

export function render(bytes: Uint8Array, mode: ViewMode): string {
  const text = textOf(bytes);
  const parsed = parseJson(text);
  if (mode === 'json' && parsed.ok) return JSON.stringify(parsed.value, null, 2);
  if (mode === 'yaml' && parsed.ok) return toYaml(parsed.value, 0).replace(/^\n/, '');
  if (mode === 'hex' || text === undefined) return hexDump(bytes);
  return text;
}

/** 16 bytes a line: offset, the bytes in hex, and the printable ASCII ones. */
export function hexDump(bytes: Uint8Array): string {
  const lines: string[] = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const row = bytes.subarray(off, off + 16);
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${off.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n');
}

const PLAIN_SCALAR = /^[A-Za-z_][A-Za-z0-9_ ./-]*$/;
const YAML_WORDS = /^(true|false|yes|no|on|off|null|~|y|n)$/i;

function yamlScalar(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return PLAIN_SCALAR.test(v) && !YAML_WORDS.test(v) && !v.endsWith(' ') ? v : JSON.stringify(v);
  return String(v);
}

/** JSON as block-style YAML (JSON's strings quoted the JSON way are valid YAML). */
function toYaml(v: unknown, indent: number): string {
  const pad = '  '.repeat(indent);
  if (Array.isArray(v)) {
    if (v.length === 0) return ' []';
    return v.map((item) => `\n${pad}-${toYaml(item, indent + 1).replace(/^\n\s*/, ' ')}`).join('');
  }
  if (v && typeof v === 'object') {
    const entries = Object.entries(v);
    if (entries.length === 0) return ' {}';
    return entries.map(([k, item]) => `\n${pad}${yamlScalar(k)}:${toYaml(item, indent + 1)}`).join('');
  }
  return ` ${yamlScalar(v)}`;
}

export interface DiffLine {
  op: ' ' | '-' | '+';
  text: string;
}

/** Past this many lines on a side the quadratic table costs too much: everything is shown as changed. */
const DIFF_LIMIT = 3000;

/** Line diff of `a` (shown as -) and `b` (shown as +), by longest common subsequence. */
export function diffLines(a: string, b: string): DiffLine[] {
  const x = a.split('\n');
  const y = b.split('\n');
  if (x.length > DIFF_LIMIT || y.length > DIFF_LIMIT) {
    return [...x.map((text) => ({ op: '-' as const, text })), ...y.map((text) => ({ op: '+' as const, text }))];
  }
  const n = x.length;
  const m = y.length;
  const lcs = new Uint32Array((n + 1) * (m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * (m + 1) + j] = x[i] === y[j] ? lcs[(i + 1) * (m + 1) + j + 1] + 1 : Math.max(lcs[(i + 1) * (m + 1) + j], lcs[i * (m + 1) + j + 1]);
    }
  }
  const out: DiffLine[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) {
      out.push({ op: ' ', text: x[i] });
      i++;
      j++;
    } else if (lcs[(i + 1) * (m + 1) + j] >= lcs[i * (m + 1) + j + 1]) {
      out.push({ op: '-', text: x[i++] });
    } else {
      out.push({ op: '+', text: y[j++] });
    }
  }
  while (i < n) out.push({ op: '-', text: x[i++] });
  while (j < m) out.push({ op: '+', text: y[j++] });
  return out;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
