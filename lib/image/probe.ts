// The two ways a format probe can say no.
//
// "This is not my format": NotThisFormat (code ERR_IMAGE_UNKNOWN_FORMAT). Detection moves
// on to the next format and keeps the reason for the final "format not recognized" error.
// "This is my format, but it is broken or unsupported": any other ImgmountError. Detection
// stops there and the caller gets that error.

import { ImgmountError } from '../errors';

export class NotThisFormat extends ImgmountError {
  readonly format: string;
  constructor(format: string, reason: string) {
    // Control flow on every init (each format before the right one says no): no stack trace
    // to capture; the caller's final ERR_IMAGE_UNKNOWN_FORMAT has its own.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super('ERR_IMAGE_UNKNOWN_FORMAT', `not a ${format} image: ${reason}`, { details: { format, reason } });
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.format = format;
  }
  /** The reason alone, without the "not a X image" prefix. */
  get reason(): string {
    return (this.details as { reason: string }).reason;
  }
}

/** Why one format rejected a file (kept in ERR_IMAGE_UNKNOWN_FORMAT's details). */
export interface FormatRejection {
  format: string;
  reason: string;
}
