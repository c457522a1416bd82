// Markdown tables for BENCHMARKS.md and the console. Pure (test/unit/harness/bench-helpers.test.ts).

export type Align = 'left' | 'right';

/** A cell as Markdown shows it literally: pipes escaped, line breaks as spaces. */
export function escapeCell(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

/**
 * A GitHub-flavoured Markdown table, columns padded to their widest cell so that it reads as
 * a table in a terminal too. Every row must have as many cells as the header.
 */
export function renderTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>, align: readonly Align[] = []): string {
  for (const [i, r] of rows.entries()) {
    if (r.length !== header.length) throw new RangeError(`row ${i} has ${r.length} cells, the header ${header.length}`);
  }
  const cells = [header, ...rows].map((r) => r.map(escapeCell));
  const width = header.map((_, c) => Math.max(3, ...cells.map((r) => r[c]!.length)));
  const pad = (s: string, c: number) => (align[c] === 'right' ? s.padStart(width[c]!) : s.padEnd(width[c]!));
  const line = (r: readonly string[]) => `| ${r.map((s, c) => pad(s, c)).join(' | ')} |`;
  const rule = `| ${width.map((w, c) => (align[c] === 'right' ? '-'.repeat(w - 1) + ':' : '-'.repeat(w))).join(' | ')} |`;
  return [line(cells[0]!), rule, ...cells.slice(1).map(line)].join('\n');
}
