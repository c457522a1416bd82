// Names that must not clash (session directories, temporary record files): 12 random hex
// digits. randomUUID() draws from a batch of entropy it keeps, so a name costs no system call
// on the hot path (randomBytes() asks the kernel each time).

import { randomUUID } from 'node:crypto';

export function uniqueSuffix(): string {
  return randomUUID().replace(/-/g, '').slice(0, 12);
}
