// Every handle the library returns has one shape (README, "Mounting"): close(), a `closed` flag
// and [Symbol.asyncDispose] (so `await using` and try/finally both work), all idempotent. The
// classes are checked at run time; the interfaces (MountedRoot, MountedFilesystem) by the
// compiler through `satisfiesHandle` below.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as imgmount from '../../../lib';
import { testTmp } from '../../support/hooks';

interface Handle {
  close(): Promise<void>;
  readonly closed: boolean;
  [Symbol.asyncDispose](): PromiseLike<void>;
}

// Compile-time: these interfaces are handles (a missing member fails the build).
const satisfiesHandle = <T extends Handle>(_handle?: T): void => undefined;
satisfiesHandle<imgmount.MountedRoot>();
satisfiesHandle<imgmount.MountedFilesystem>();
satisfiesHandle<imgmount.Image>();
satisfiesHandle<imgmount.LoopDevice>();
satisfiesHandle<imgmount.Mount>();
satisfiesHandle<imgmount.NamespaceMount>();
satisfiesHandle<imgmount.NamespaceFd>();
satisfiesHandle<imgmount.SifWriter>();

describe('handles', () => {
  const classes = { Image: imgmount.Image, LoopDevice: imgmount.LoopDevice, Mount: imgmount.Mount, NamespaceMount: imgmount.NamespaceMount, NamespaceFd: imgmount.NamespaceFd, SifWriter: imgmount.SifWriter };

  for (const [name, cls] of Object.entries(classes)) {
    it(`${name} has close(), closed and [Symbol.asyncDispose]`, () => {
      const proto = cls.prototype as unknown as Record<string | symbol, unknown>;
      expect(typeof proto.close, 'close').to.equal('function');
      expect(typeof proto[Symbol.asyncDispose], 'asyncDispose').to.equal('function');
      expect(typeof Object.getOwnPropertyDescriptor(proto, 'closed')?.get, 'closed').to.equal('function');
    });
  }

  it('SifWriter: close() is shared and idempotent, and await using closes it', async () => {
    const file = path.join(testTmp, 'handles.sif');
    const w = await imgmount.createSif(file, { deterministic: true });
    expect(w.closed).to.equal(false);
    const a = w.close();
    expect(w.close()).to.equal(a);
    await a;
    expect(w.closed).to.equal(true);
    await w[Symbol.asyncDispose]();
    {
      await using w2 = await imgmount.openSifWriter(file);
      expect(w2.closed).to.equal(false);
    }
    // Both writers closed their fds: the file can be removed and nothing of ours holds it.
    const held = fs.readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`) === file;
      } catch {
        return false;
      }
    });
    expect(held).to.deep.equal([]);
  });
});
