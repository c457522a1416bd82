// Checks the direction of dependencies in lib/ (ARCHITECTURE.md): no import cycle between
// files, none between areas (an area is a top-level folder of lib/: lib/image, lib/root, ...;
// a file directly in lib/ is an area of its own, except lib/index.ts, the package entry, which
// imports every area and is left out of the area graph), and no area importing one that the
// layering table below does not allow.
//
// Only imports that exist at run time count: `import type`, `export type` and imports whose
// every name is marked `type` are erased by the compiler; `import x = require()`, `require()`
// and dynamic `import()` count. Only relative specifiers are followed (packages and node:
// modules are not part of the graph).
//
//   node dist/scripts/check-cycles.js [LIB_DIR] [--no-layers]
//     (default LIB_DIR: the repo's lib/; prints each cycle and forbidden import; exit 1 if any)

import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';

/** A runtime import of one file by another, with the line it is on. */
export interface ImportEdge {
  from: string;
  to: string;
  line: number;
}

export interface CycleReport {
  /** Each cycle as the files (relative to the checked directory) in import order, the first repeated at the end. */
  fileCycles: string[][];
  /** Each cycle of areas, the same way. */
  areaCycles: string[][];
  /** Imports from one area into another that the layering table does not allow, as "from -> to (file:line -> file)". */
  forbidden: string[];
}

/**
 * Which areas each area may import at run time (the layering of ARCHITECTURE.md, lower layers
 * first). An area that is not listed here is reported by any import it makes or receives, so
 * that a new area is placed in the table when it is added.
 */
export const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  errors: [],
  util: ['errors'],
  native: ['errors', 'util'],
  io: ['errors', 'native', 'util'],
  sif: ['errors', 'io', 'util'],
  image: ['errors', 'io', 'native', 'sif', 'util'],
  path: ['errors', 'io', 'native', 'util'],
  loop: ['errors', 'io', 'native', 'path', 'util'],
  ns: ['errors', 'io', 'native', 'path', 'util'],
  mount: ['errors', 'io', 'loop', 'native', 'ns', 'path', 'util'],
  drivers: ['errors', 'image', 'io', 'loop', 'mount', 'native', 'ns', 'path', 'util'],
  root: ['drivers', 'errors', 'image', 'io', 'loop', 'mount', 'native', 'ns', 'path', 'util'],
  cli: ['drivers', 'errors', 'image', 'io', 'loop', 'mount', 'native', 'ns', 'path', 'root', 'sif', 'util'],
};

function tsFiles(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) return tsFiles(p);
      return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
    })
    .sort();
}

/** The relative specifiers a file imports at run time, each with its line (1-based). */
export function runtimeImports(fileName: string, text: string): { specifier: string; line: number }[] {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: { specifier: string; line: number }[] = [];
  const add = (spec: ts.Expression | undefined, at: ts.Node): void => {
    if (spec && ts.isStringLiteralLike(spec)) found.push({ specifier: spec.text, line: sf.getLineAndCharacterOfPosition(at.getStart(sf)).line + 1 });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      // `import './x'` runs the module; `import type` never does; `import { type A, type B }` is erased.
      const typeOnly =
        clause !== undefined &&
        (clause.isTypeOnly ||
          (clause.name === undefined &&
            clause.namedBindings !== undefined &&
            ts.isNamedImports(clause.namedBindings) &&
            clause.namedBindings.elements.length > 0 &&
            clause.namedBindings.elements.every((e) => e.isTypeOnly)));
      if (!typeOnly) add(node.moduleSpecifier, node);
      return;
    }
    if (ts.isExportDeclaration(node)) {
      const typeOnly =
        node.isTypeOnly ||
        (node.exportClause !== undefined && ts.isNamedExports(node.exportClause) && node.exportClause.elements.length > 0 && node.exportClause.elements.every((e) => e.isTypeOnly));
      if (!typeOnly) add(node.moduleSpecifier, node);
      return;
    }
    if (ts.isImportEqualsDeclaration(node)) {
      if (!node.isTypeOnly && ts.isExternalModuleReference(node.moduleReference)) add(node.moduleReference.expression, node);
      return;
    }
    if (ts.isCallExpression(node)) {
      const dynamicImport = node.expression.kind === ts.SyntaxKind.ImportKeyword;
      const requireCall = ts.isIdentifier(node.expression) && node.expression.text === 'require';
      if ((dynamicImport || requireCall) && node.arguments.length === 1) add(node.arguments[0], node);
    }
    // `import('./x').T` in a type position (ImportTypeNode) is a type: not followed.
    if (ts.isImportTypeNode(node)) return;
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found.filter((f) => f.specifier.startsWith('./') || f.specifier.startsWith('../') || f.specifier === '.' || f.specifier === '..');
}

function resolveSpecifier(fromFile: string, specifier: string): string | undefined {
  const base = path.resolve(path.dirname(fromFile), specifier);
  for (const candidate of [`${base}.ts`, path.join(base, 'index.ts'), base]) {
    if (candidate.endsWith('.ts') && fs.existsSync(candidate) && fs.statSync(candidate).isFile()) return candidate;
  }
  return undefined;
}

/** The runtime import graph of the .ts files under `dir`, with paths relative to `dir`. */
export function importGraph(dir: string): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const file of tsFiles(dir)) {
    for (const { specifier, line } of runtimeImports(file, fs.readFileSync(file, 'utf8'))) {
      const target = resolveSpecifier(file, specifier);
      if (target === undefined) continue;
      const rel = path.relative(dir, target);
      if (rel.startsWith('..') || path.isAbsolute(rel)) continue; // outside the checked tree
      edges.push({ from: path.relative(dir, file), to: rel, line });
    }
  }
  return edges;
}

/** The area of a file relative to lib/: its top-level folder, or its name for a file directly in lib/; undefined for the package entry. */
export function areaOf(rel: string): string | undefined {
  const parts = rel.split(path.sep);
  if (parts.length > 1) return parts[0];
  return rel === 'index.ts' ? undefined : rel.replace(/\.ts$/, '');
}

/**
 * Cycles of a directed graph: one per strongly connected component with more than one node
 * (or a node importing itself), given as the shortest cycle through its first node in sorted
 * order; the component's other members follow as further cycles only if they are on none shown.
 */
export function cyclesOf(nodes: Iterable<string>, next: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  // Tarjan's strongly connected components.
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const strong = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      components.push(comp.sort());
    }
  };
  for (const v of [...nodes].sort()) if (!idx.has(v)) strong(v);
  components.sort((x, y) => (x[0]! < y[0]! ? -1 : 1));

  const cycles: string[][] = [];
  for (const comp of components) {
    const members = new Set(comp);
    if (comp.length === 1 && !next.get(comp[0]!)?.has(comp[0]!)) continue;
    const covered = new Set<string>();
    for (const start of comp) {
      if (covered.has(start)) continue;
      const cycle = shortestCycle(start, next, members);
      cycles.push(cycle);
      for (const n of cycle) covered.add(n);
    }
  }
  return cycles;
}

function shortestCycle(start: string, next: ReadonlyMap<string, ReadonlySet<string>>, within: ReadonlySet<string>): string[] {
  const prev = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const v = queue[i]!;
    for (const w of [...(next.get(v) ?? [])].sort()) {
      if (!within.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let u: string | undefined = v; u !== start && u !== undefined; u = prev.get(u)) path.splice(1, 0, u);
        return [...path, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start]; // unreachable for a member of a strongly connected component
}

function adjacency(pairs: Iterable<[string, string]>): Map<string, Set<string>> {
  const next = new Map<string, Set<string>>();
  for (const [a, b] of pairs) {
    if (!next.has(a)) next.set(a, new Set());
    next.get(a)!.add(b);
  }
  return next;
}

/** Checks the .ts tree under `dir` (laid out like lib/). `layers: false` skips the layering table. */
export function checkCycles(dir: string, options: { layers?: boolean } = {}): CycleReport {
  const edges = importGraph(dir);
  const files = new Set(tsFiles(dir).map((f) => path.relative(dir, f)));
  const fileCycles = cyclesOf(files, adjacency(edges.map((e) => [e.from, e.to])));

  const areaEdges = edges.flatMap((e) => {
    const a = areaOf(e.from);
    const b = areaOf(e.to);
    return a !== undefined && b !== undefined && a !== b ? [{ a, b, e }] : [];
  });
  const areas = new Set([...files].map(areaOf).filter((a): a is string => a !== undefined));
  const areaCycles = cyclesOf(areas, adjacency(areaEdges.map(({ a, b }) => [a, b])));

  const forbidden: string[] = [];
  if (options.layers ?? true) {
    for (const { a, b, e } of areaEdges) {
      if (ALLOWED[a]?.includes(b)) continue;
      const why = ALLOWED[a] === undefined ? `area ${a} is not in the layering table` : ALLOWED[b] === undefined ? `area ${b} is not in the layering table` : `${a} may not import ${b}`;
      forbidden.push(`${a} -> ${b}: ${e.from}:${e.line} -> ${e.to} (${why})`);
    }
  }
  return { fileCycles, areaCycles, forbidden };
}

/** The report as text, one line per finding, ending with the counts. */
export function formatReport(r: CycleReport): string {
  const lines = [
    ...r.fileCycles.map((c) => `file cycle: ${c.join(' -> ')}`),
    ...r.areaCycles.map((c) => `area cycle: ${c.join(' -> ')}`),
    ...r.forbidden.map((f) => `forbidden import: ${f}`),
    `${r.fileCycles.length} file cycles, ${r.areaCycles.length} area cycles, ${r.forbidden.length} forbidden imports`,
  ];
  return lines.join('\n') + '\n';
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const layers = !args.includes('--no-layers');
  const rest = args.filter((a) => a !== '--no-layers');
  if (rest.length > 1 || rest.some((a) => a.startsWith('-'))) {
    process.stderr.write('usage: check-cycles [LIB_DIR] [--no-layers]\n');
    process.exit(2);
  }
  const dir = path.resolve(rest[0] ?? path.join(__dirname, '..', '..', 'lib'));
  const report = checkCycles(dir, { layers });
  process.stdout.write(formatReport(report));
  process.exit(report.fileCycles.length + report.areaCycles.length + report.forbidden.length > 0 ? 1 : 0);
}
