// The legacy launch-script header in front of bare squashfs/ext3 images:
// `#!/usr/bin/env run-singularity\n` (31 bytes), making the image executable.
//
// Apptainer looks for " run-singularity" anywhere in the first 2 KiB and assumes exactly
// one "\n" after it, so CRLF or extra arguments give a wrong offset. We parse the first
// line instead: if the file starts with "#!", the filesystem starts right after the first
// "\n" (any content and line ending before it).

export interface LaunchHeader {
  /** Bytes to skip before the filesystem starts (0 when there is no header). */
  length: number;
  /** The header line without its line ending, when present. */
  line?: string;
}

/** Longest first line we accept as a launch header; Apptainer's window is the 2 KiB probe. */
export const MAX_LAUNCH_HEADER = 2048;

/** Parses the launch header at the start of `buf`; `undefined` means "#!" without a line end in range. */
export function parseLaunchHeader(buf: Buffer): LaunchHeader | undefined {
  if (buf.length < 2 || buf[0] !== 0x23 /* # */ || buf[1] !== 0x21 /* ! */) return { length: 0 };
  const nl = buf.indexOf(0x0a, 2);
  if (nl < 0 || nl >= MAX_LAUNCH_HEADER) return undefined;
  let end = nl;
  if (end > 0 && buf[end - 1] === 0x0d) end--;
  return { length: nl + 1, line: buf.subarray(0, end).toString('latin1') };
}
