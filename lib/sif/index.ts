// The SIF codec: reading (loadSif), writing (createSif / openSifWriter) and the integrity streams.

export * from './constants';
export type {
  SifCryptoMessageInfo,
  SifDescriptor,
  SifHeader,
  SifImage,
  SifLink,
  SifPartitionInfo,
  SifSBOMInfo,
  SifSignatureInfo,
} from './types';
export { loadSif, findPrimaryPartitions, descriptorData } from './read';
export type { LoadSifOptions } from './read';
export { headerIntegrityBytes, descriptorIntegrityBytes, relativeId } from './integrity';
export { createSif, openSifWriter, SifWriter } from './write';
export type { CreateSifOptions, SifChangeOptions, DeleteSifObjectOptions } from './write';
export { describeObjectInput, nextAligned } from './object-input';
export type { SifObjectInput } from './object-input';
export { MemoryTarget, fdTarget, fileHandleTarget } from './target';
export type { SifWriteTarget, SifTargetLike } from './target';
