// uniqueSuffix (lib/util/unique.ts): 12 lowercase hex digits, different every time.
import { expect } from 'chai';
import { uniqueSuffix } from '../../../lib/util/unique';

describe('util/unique: names that must not clash', () => {
  it('is 12 lowercase hex digits (no dashes)', () => {
    for (let i = 0; i < 100; i++) expect(uniqueSuffix()).to.match(/^[0-9a-f]{12}$/);
  });

  it('does not repeat over 10000 draws', () => {
    const seen = new Set(Array.from({ length: 10000 }, () => uniqueSuffix()));
    expect(seen.size).to.equal(10000);
  });
});
