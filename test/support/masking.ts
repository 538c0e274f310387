// Masking for differential comparisons: values that legitimately differ between two etcds (member IDs,
// URLs, lease IDs etcd picked, tokens) are replaced by placeholders before the answers are compared.

/** A copy of `value` in which every occurrence of each key of `replacements` inside a string (a whole
 *  string or part of one, e.g. `"memberID:123 alarm:NOSPACE "`) is replaced by its placeholder. Key order is kept. */
export function replaceStrings(value: unknown, replacements: Record<string, string>): unknown {
  const entries = Object.entries(replacements).filter(([from]) => from !== '');
  const fix = (s: string): string => entries.reduce((acc, [from, to]) => acc.split(from).join(to), s);
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return fix(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return walk(value);
}

/** A copy of `value` with the named fields (at any depth) replaced by `placeholder`, if present. */
export function replaceFields(value: unknown, fields: string[], placeholder = '<masked>'): unknown {
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object') {
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fields.includes(k) ? placeholder : walk(x)]));
    }
    return v;
  };
  return walk(value);
}
