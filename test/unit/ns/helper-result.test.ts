// The result imgmount-nsenter writes on its result fd (lib/ns/helper.ts parseHelperResult):
// "OK", or "ERR <errno> <step>" followed by the fs context's kernel messages as "K <text>".
import { expect } from 'chai';
import { parseHelperResult } from '../../../lib/ns/helper';

describe('ns/helper: parsing the helper result', () => {
  it('parses the helper result format', () => {
    expect(parseHelperResult('OK\n')).to.deep.equal({ ok: true, messages: [] });
    expect(parseHelperResult('ERR 2 move_mount\nK e nope\n')).to.deep.equal({ ok: false, errno: 2, step: 'move_mount', messages: ['e nope'] });
    expect(parseHelperResult('')).to.equal(null);
    expect(parseHelperResult('whatever')).to.equal(null);
  });

  it('keeps only K lines as kernel messages, in order, and ignores blank lines', () => {
    expect(parseHelperResult('\nERR 22 fsconfig(FSCONFIG_CMD_CREATE)\nK e first\nnoise\n\nK w second\n')).to.deep.equal({
      ok: false,
      errno: 22,
      step: 'fsconfig(FSCONFIG_CMD_CREATE)',
      messages: ['e first', 'w second'],
    });
    // OK wins whatever follows it.
    expect(parseHelperResult('OK\nK ignored\n')).to.deep.equal({ ok: true, messages: [] });
  });

  it('refuses a first line that is not exactly OK or ERR <digits> <step>', () => {
    for (const bad of ['\n\n', 'ok\n', 'ERR x move_mount\n', 'ERR 2\n', 'ERR 2 move mount\n', 'ERR -2 move_mount\n', ' OK\n']) {
      expect(parseHelperResult(bad), JSON.stringify(bad)).to.equal(null);
    }
  });
});
