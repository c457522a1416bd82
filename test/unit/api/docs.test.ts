// The API reference: scripts/docs.sh builds it with TypeDoc (warnings are errors: a broken
// {@link}, a public signature using a type the package does not export) and checks every
// relative link and anchor in it and the README's links (scripts/check-links.ts); the README
// links to it. The link checker itself is tried on pages with known breakage first.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { brokenHtmlLinks, brokenMarkdownLinks } from '../../../scripts/check-links';
import { testTmp } from '../../support/hooks';
import { repoRoot } from '../../support/paths';

describe('API reference', function () {
  this.timeout(120_000);

  it('the link checker finds a missing page, a missing anchor and a broken Markdown link, and passes good ones', () => {
    const dir = path.join(testTmp, 'links');
    fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'a.html'), '<a href="sub/b.html#here">ok</a> <a href="sub/b.html#gone">x</a> <a href="nope.html">y</a> <a href="https://example.org/">z</a> <img src="sub/b.html">');
    fs.writeFileSync(path.join(dir, 'sub', 'b.html'), '<h2 id="here">here</h2> <a href="../a.html">back</a>');
    expect(brokenHtmlLinks(dir).sort()).to.deep.equal(['a.html: nope.html (no nope.html)', 'a.html: sub/b.html#gone (no id "gone" there)']);
    fs.writeFileSync(path.join(dir, 'x.md'), '[ok](sub/b.html) [bad](missing.md#x) [web](https://example.org) [anchor](#top)\n```\n[code](not-a-link.md)\n```\n');
    expect(brokenMarkdownLinks(path.join(dir, 'x.md'))).to.deep.equal(['x.md: missing.md#x']);
  });

  it('scripts/docs.sh builds it from the declarations without a warning or a broken link, and the README links to it', () => {
    const r = spawnSync(path.join(repoRoot, 'scripts', 'docs.sh'), [], { cwd: repoRoot, encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).to.equal(0);
    expect(r.stdout).to.equal('docs: dist/docs/api/index.html\n');
    const api = path.join(repoRoot, 'dist', 'docs', 'api');
    for (const page of ['index.html', 'functions/init.html', 'classes/Image.html', 'classes/ImgmountError.html', 'interfaces/MountedRoot.html']) expect(fs.existsSync(path.join(api, page)), page).to.equal(true);
    const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    expect(readme).to.include('](dist/docs/api/index.html)');
    expect(readme).to.include('`npm run docs`');
  });
});
