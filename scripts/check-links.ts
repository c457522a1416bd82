// Checks links that stay inside what we ship or generate: every relative href/src in the HTML
// files under a directory (the API reference) leads to a file that exists and, with #anchor, to
// an element with that id (or name) there; every relative link of a Markdown file leads to a
// file or directory that exists. External links (http:, mailto:, ...) are not fetched.
//
//   node dist/scripts/check-links.js DIR|FILE.md...     (prints the broken links; exit 1 if any)

import * as fs from 'node:fs';
import * as path from 'node:path';

const EXTERNAL = /^[a-z][a-z0-9+.-]*:/i;

function htmlFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? htmlFiles(p) : e.name.endsWith('.html') ? [p] : [];
  });
}

const idCache = new Map<string, Set<string>>();

function idsOf(file: string): Set<string> {
  let ids = idCache.get(file);
  if (!ids) {
    const text = fs.readFileSync(file, 'utf8');
    ids = new Set([...text.matchAll(/\s(?:id|name)="([^"]*)"/g)].map((m) => decodeURIComponent(m[1]!)));
    idCache.set(file, ids);
  }
  return ids;
}

/** Broken links of the HTML files under `dir`, as "file: link (why)". */
export function brokenHtmlLinks(dir: string): string[] {
  const broken: string[] = [];
  for (const file of htmlFiles(dir)) {
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(/\s(?:href|src)="([^"]*)"/g)) {
      const link = m[1]!.replace(/&amp;/g, '&');
      if (EXTERNAL.test(link) || link === '' || link === '#') continue;
      const [target, anchor] = link.split('#', 2) as [string, string | undefined];
      const dest = target === '' ? file : path.resolve(path.dirname(file), decodeURIComponent(target));
      const where = `${path.relative(dir, file)}: ${link}`;
      if (!fs.existsSync(dest)) broken.push(`${where} (no ${path.relative(dir, dest)})`);
      else if (anchor && fs.statSync(dest).isFile() && !idsOf(dest).has(decodeURIComponent(anchor))) broken.push(`${where} (no id "${anchor}" there)`);
    }
  }
  return broken;
}

/** Broken relative links of a Markdown file (`[text](target)`, outside code blocks), as "file: link". */
export function brokenMarkdownLinks(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8').replace(/^```[\s\S]*?^```/gm, '');
  const broken: string[] = [];
  for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    const link = m[1]!;
    if (EXTERNAL.test(link) || link.startsWith('#')) continue;
    const target = link.split('#', 1)[0]!;
    if (!fs.existsSync(path.resolve(path.dirname(file), decodeURIComponent(target)))) broken.push(`${path.basename(file)}: ${link}`);
  }
  return broken;
}

if (require.main === module) {
  const args = process.argv.slice(2);
  if (args.length === 0) {
    process.stderr.write('usage: check-links DIR|FILE.md...\n');
    process.exit(2);
  }
  const broken = args.flatMap((a) => (a.endsWith('.md') ? brokenMarkdownLinks(a) : brokenHtmlLinks(a)));
  for (const b of broken) process.stdout.write(`broken link: ${b}\n`);
  process.exit(broken.length ? 1 : 0);
}
