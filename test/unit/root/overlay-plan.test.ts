// The overlay plan of a root (lib/root/overlay-plan.ts), without mounting: which layers in
// Apptainer's order, which one is writable, what overlayfs gets of each, the session
// directories, the overlay's options and flags, and who mounts it. The kernel tests
// (test/kernel/root/root.test.ts, hops.test.ts) build real roots from the same plan.
import { expect } from 'chai';
import { ImgmountError } from '../../../lib/errors';
import { EXT3, OverlayUsage, SANDBOX, SIF, SQUASHFS } from '../../../lib/image/constants';
import type { Section } from '../../../lib/image/section';
import {
  DEFAULT_TMPFS_SIZE,
  UPPER_DIR,
  WORK_DIR,
  escapeLayer,
  externalLayer,
  layerUse,
  overlayDriver,
  overlayMount,
  planRoot,
  sifOverlayLayer,
  tmpfsLayer,
  type PlannedImage,
  type RootPlanInput,
} from '../../../lib/root/overlay-plan';
import { thrown as thrownOf } from '../../support/expect-error';

const thrown = (fn: () => unknown): ImgmountError => thrownOf(fn, ImgmountError);

const section = (id: number, type: number, name = `part-${id}`): Section => ({ name, size: 1 << 20, offset: 4096 * id, id, type, allowedUsage: OverlayUsage });
const ext3Overlay1 = section(4, EXT3, 'overlay-a');
const ext3Overlay2 = section(5, EXT3, 'overlay-b');
const squashOverlay = section(6, SQUASHFS, 'overlay-sq');

function image(over: Partial<PlannedImage> & { overlayParts?: Section[] } = {}): PlannedImage & { asked: number } {
  const { overlayParts = [], ...rest } = over;
  const img = {
    path: '/images/a.sif',
    type: SIF,
    writable: false,
    asked: 0,
    getOverlayPartitions(): Section[] {
      img.asked++;
      return overlayParts;
    },
    ...rest,
  };
  return img;
}

const plain: RootPlanInput = { writable: false, writableTmpfs: false, overlays: [], rootWritableProblem: '/images/a.sif: squashfs is a read-only filesystem', data: 0, namespace: false, idmap: false };

describe('root/overlay-plan: the layers of a root, decided without mounting', () => {
  describe('planRoot', () => {
    it('a plain SIF root: no overlay, no layers, nothing staged', () => {
      expect(planRoot(image(), plain)).to.deep.equal({ external: [], sifOverlays: [], rootWritable: false, needsOverlay: false, staged: false, layers: [] });
    });

    it('writableTmpfs: an overlay over the root, tmpfs above lower', () => {
      expect(planRoot(image(), { ...plain, writableTmpfs: true })).to.deep.equal({
        external: [],
        sifOverlays: [],
        rootWritable: false,
        needsOverlay: true,
        staged: false,
        layers: ['tmpfs', 'lower'],
      });
    });

    it('external overlays: paths are read-only, objects say; one directory each, in the order given', () => {
      const p = planRoot(image(), { ...plain, overlays: ['/o/one.img', { path: '/o/two' }, { path: '/o/three.img', writable: true }] });
      expect(p.external).to.deep.equal([
        { path: '/o/one.img', writable: false },
        { path: '/o/two', writable: false },
        { path: '/o/three.img', writable: true },
      ]);
      expect(p.needsOverlay).to.equal(true);
      expect(p.layers).to.deep.equal(['overlay-0', 'overlay-1', 'overlay-2', 'lower']);
    });

    it("a SIF's ext3 overlay partitions are applied on every run; its squashfs ones and other formats' are not asked for", () => {
      const sif = image({ overlayParts: [ext3Overlay1, squashOverlay, ext3Overlay2] });
      const p = planRoot(sif, plain);
      expect(p.sifOverlays.map((s) => s.id)).to.deep.equal([4, 5]);
      expect(p.needsOverlay).to.equal(true);
      expect(p.layers).to.deep.equal(['sif-overlay-0', 'sif-overlay-1', 'lower']);
      const bare = image({ type: SQUASHFS, overlayParts: [ext3Overlay1] });
      expect(planRoot(bare, plain).sifOverlays).to.deep.equal([]);
      expect(bare.asked).to.equal(0);
    });

    it('every kind at once, for another namespace: root (staging), overlays, tmpfs, SIF overlays, lower', () => {
      const p = planRoot(image({ overlayParts: [ext3Overlay1, ext3Overlay2] }), { ...plain, overlays: ['/o/a', '/o/b'], writableTmpfs: true, namespace: true });
      expect(p.staged).to.equal(true);
      expect(p.layers).to.deep.equal(['root', 'overlay-0', 'overlay-1', 'tmpfs', 'sif-overlay-0', 'sif-overlay-1', 'lower']);
    });

    it('another namespace: staged only with layers or data partitions; data alone stages root and lower', () => {
      expect(planRoot(image(), { ...plain, namespace: true })).to.include({ staged: false, needsOverlay: false });
      expect(planRoot(image(), { ...plain, namespace: true }).layers).to.deep.equal([]);
      const data = planRoot(image(), { ...plain, namespace: true, data: 2 });
      expect(data).to.include({ staged: true, needsOverlay: false });
      expect(data.layers).to.deep.equal(['root', 'lower']);
      // Here, data partitions need no layers.
      expect(planRoot(image(), { ...plain, data: 2 }).layers).to.deep.equal([]);
    });

    it('writable: an ext3 root or sandbox opened writable is written in place, without an overlay', () => {
      expect(planRoot(image({ type: EXT3, writable: true }), { ...plain, writable: true, rootWritableProblem: undefined })).to.deep.equal({
        external: [],
        sifOverlays: [],
        rootWritable: true,
        needsOverlay: false,
        staged: false,
        layers: [],
      });
    });

    it('writable with tmpfs or an overlay asked: the root stays read-only under the overlay', () => {
      const w = { ...plain, writable: true, rootWritableProblem: undefined };
      expect(planRoot(image({ type: EXT3, writable: true }), { ...w, writableTmpfs: true })).to.include({ rootWritable: false, needsOverlay: true });
      expect(planRoot(image({ type: EXT3, writable: true }), { ...w, overlays: [{ path: '/o/rw', writable: true }] })).to.include({ rootWritable: false, needsOverlay: true });
      // A read-only overlay over a writable ext3 root leaves nothing to write to.
      expect(thrown(() => planRoot(image({ type: EXT3, writable: true }), { ...w, overlays: ['/o/ro'] })).code).to.equal('ERR_READ_ONLY_FS');
      // An ext3 overlay partition in the SIF takes the writes instead of the root.
      expect(planRoot(image({ writable: true, overlayParts: [ext3Overlay1] }), w)).to.include({ rootWritable: false, needsOverlay: true });
    });

    it('writable with no writable layer anywhere: ERR_READ_ONLY_FS, saying how to get one', () => {
      const w = { ...plain, writable: true };
      const ro = thrown(() => planRoot(image(), w));
      expect(ro.code).to.equal('ERR_READ_ONLY_FS');
      expect(ro.path).to.equal('/images/a.sif');
      expect(ro.message).to.equal(
        'no SIF writable overlay partition found in /images/a.sif (open the image with init(path, true) to use one); use writableTmpfs, an overlay image, or an ext3 root or sandbox opened writable',
      );
      expect(thrown(() => planRoot(image({ writable: true }), w)).message).to.equal(
        'no SIF writable overlay partition found in /images/a.sif; use writableTmpfs, an overlay image, or an ext3 root or sandbox opened writable',
      );
      // A SIF overlay partition in an image opened read-only cannot take the writes either.
      expect(thrown(() => planRoot(image({ overlayParts: [ext3Overlay1] }), w)).code).to.equal('ERR_READ_ONLY_FS');
      // Only a writable external overlay counts.
      expect(thrown(() => planRoot(image(), { ...w, overlays: ['/o/ro'] })).code).to.equal('ERR_READ_ONLY_FS');
      // Any of them will do.
      expect(planRoot(image(), { ...w, writableTmpfs: true }).layers).to.deep.equal(['tmpfs', 'lower']);
      expect(planRoot(image(), { ...w, overlays: [{ path: '/o/rw', writable: true }] }).layers).to.deep.equal(['overlay-0', 'lower']);
      expect(planRoot(image({ writable: true, overlayParts: [ext3Overlay1] }), w).layers).to.deep.equal(['sif-overlay-0', 'lower']);
    });

    it('an ID-mapped root cannot have an overlay (ERR_IDMAP_UNSUPPORTED); without one it can; no writable layer is said first', () => {
      const e = thrown(() => planRoot(image(), { ...plain, idmap: true, writableTmpfs: true }));
      expect(e.code).to.equal('ERR_IDMAP_UNSUPPORTED');
      expect(e.message).to.equal('ID-mapped roots cannot have overlays (overlayfs itself cannot be ID-mapped); mount the root without overlays');
      expect(planRoot(image(), { ...plain, idmap: true }).needsOverlay).to.equal(false);
      expect(thrown(() => planRoot(image(), { ...plain, idmap: true, writable: true })).code).to.equal('ERR_READ_ONLY_FS');
    });
  });

  describe('which overlay partition is the writable layer', () => {
    const rwImage = { path: '/o/rw.img', writable: true };
    const roImage = { path: '/o/ro.img', writable: false };
    const rw = { path: '/o/rw.img', writable: true };
    const ro = { path: '/o/ro.img', writable: false };

    it('a read-only overlay: every partition a lower layer, the first on overlay-I, the others on overlay-I-J', () => {
      expect(externalLayer(2, 0, ro, roImage, ext3Overlay1, false, undefined)).to.deep.equal({ name: 'overlay-2', writable: false });
      expect(externalLayer(2, 1, ro, roImage, ext3Overlay2, false, undefined)).to.deep.equal({ name: 'overlay-2-1', writable: false });
      expect(externalLayer(0, 0, ro, rwImage, ext3Overlay1, false, undefined)).to.deep.equal({ name: 'overlay-0', writable: false });
    });

    it('a writable overlay: its first ext3 or sandbox partition, opened writable, is the upper layer; the rest lower', () => {
      expect(externalLayer(0, 0, rw, rwImage, ext3Overlay1, false, undefined)).to.deep.equal({ name: 'overlay-0', writable: true });
      expect(externalLayer(1, 0, rw, rwImage, section(1, SANDBOX), false, undefined)).to.deep.equal({ name: 'overlay-1', writable: true });
      expect(externalLayer(0, 1, rw, rwImage, ext3Overlay2, false, undefined)).to.deep.equal({ name: 'overlay-0-1', writable: false });
    });

    it('a writable overlay that cannot be: ERR_READ_ONLY_FS with the reason, or that another overlay already is', () => {
      const sq = thrown(() => externalLayer(0, 0, rw, rwImage, squashOverlay, false, '/o/rw.img: squashfs is a read-only filesystem'));
      expect(sq.code).to.equal('ERR_READ_ONLY_FS');
      expect(sq.path).to.equal('/o/rw.img');
      expect(sq.message).to.equal('overlay /o/rw.img cannot be the writable layer: /o/rw.img: squashfs is a read-only filesystem');
      expect(thrown(() => externalLayer(0, 0, rw, { path: '/o/rw.img', writable: false }, ext3Overlay1, false, 'opened read-only')).message).to.equal(
        'overlay /o/rw.img cannot be the writable layer: opened read-only',
      );
      expect(thrown(() => externalLayer(1, 0, rw, rwImage, ext3Overlay1, true, undefined)).message).to.equal(
        'overlay /o/rw.img cannot be the writable layer: another overlay already is',
      );
    });

    it("the SIF's own overlay partitions: the first is writable when writing, the image is writable and nothing above took it", () => {
      expect(sifOverlayLayer(0, false, true, true)).to.deep.equal({ name: 'sif-overlay-0', writable: true });
      expect(sifOverlayLayer(1, false, true, true)).to.deep.equal({ name: 'sif-overlay-1', writable: false });
      expect(sifOverlayLayer(0, true, true, true)).to.deep.equal({ name: 'sif-overlay-0', writable: false });
      expect(sifOverlayLayer(0, false, false, true)).to.deep.equal({ name: 'sif-overlay-0', writable: false });
      expect(sifOverlayLayer(0, false, true, false)).to.deep.equal({ name: 'sif-overlay-0', writable: false });
    });

    it('what overlayfs gets of a layer: a squashfs whole, the writable layer upper/ and work/, a read-only one upper/ when it has one', () => {
      expect(layerUse(squashOverlay, false)).to.equal('whole');
      expect(layerUse(squashOverlay, true)).to.equal('whole');
      expect(layerUse(ext3Overlay1, true)).to.equal('upper-and-work');
      expect(layerUse(ext3Overlay1, false)).to.equal('upper-if-present');
      expect(layerUse(section(1, SANDBOX), false)).to.equal('upper-if-present');
      expect(UPPER_DIR).to.deep.equal({ name: 'upper', mode: 0o755 });
      expect(WORK_DIR).to.deep.equal({ name: 'work', mode: 0o700 });
    });
  });

  describe('the overlay mount', () => {
    it('the tmpfs upper layer: nosuid, nodev, the size asked (64m by default), mode 0755', () => {
      expect(DEFAULT_TMPFS_SIZE).to.equal('64m');
      expect(tmpfsLayer('64m')).to.deep.equal({ flags: 6, options: 'size=64m,mode=0755' });
      expect(tmpfsLayer('1g')).to.deep.equal({ flags: 6, options: 'size=1g,mode=0755' });
    });

    it('read-only: the lower layers top-most first; nosuid, nodev, rdonly', () => {
      expect(overlayMount(['/s/overlay-0', '/s/sif-overlay-0', '/s/lower'], undefined)).to.deep.equal({
        options: ['lowerdir=/s/overlay-0:/s/sif-overlay-0:/s/lower'],
        flags: 7,
        readOnly: true,
      });
    });

    it('writable: upperdir and workdir after lowerdir; nosuid, nodev', () => {
      expect(overlayMount(['/s/lower'], { upper: '/s/tmpfs/upper', work: '/s/tmpfs/work' })).to.deep.equal({
        options: ['lowerdir=/s/lower', 'upperdir=/s/tmpfs/upper', 'workdir=/s/tmpfs/work'],
        flags: 6,
        readOnly: false,
      });
    });

    it("escapes what overlayfs splits on (':' in lowerdir, ',' in options) and the backslash", () => {
      expect(escapeLayer('/plain/dir')).to.equal('/plain/dir');
      expect(escapeLayer('/a:b,c\\d')).to.equal('/a\\:b\\,c\\\\d');
      expect(overlayMount(['/x:1', '/y,2'], { upper: '/u\\p', work: '/w:k' }).options).to.deep.equal(['lowerdir=/x\\:1:/y\\,2', 'upperdir=/u\\\\p', 'workdir=/w\\:k']);
    });

    it("the kernel's overlayfs when root, the kernel has it, FUSE is not asked for and the upper layer is not on FUSE; else fuse-overlayfs", () => {
      const facts = { privileged: true, filesystems: ['squashfs', 'overlay'], driver: undefined, upperOnFuse: false };
      expect(overlayDriver(facts)).to.equal('kernel');
      expect(overlayDriver({ ...facts, driver: 'kernel' })).to.equal('kernel');
      expect(overlayDriver({ ...facts, driver: 'auto' })).to.equal('kernel');
      expect(overlayDriver({ ...facts, privileged: false })).to.equal('fuse-overlayfs');
      expect(overlayDriver({ ...facts, filesystems: ['squashfs'] })).to.equal('fuse-overlayfs');
      expect(overlayDriver({ ...facts, driver: 'fuse' })).to.equal('fuse-overlayfs');
      expect(overlayDriver({ ...facts, upperOnFuse: true })).to.equal('fuse-overlayfs');
    });
  });
});
