// The library's debug log: NODE_DEBUG=imgmount (read once, as Node's debuglog reads it).
//
// Switched off, `debug` is a function that does nothing: util.debuglog's own logger collects
// its arguments and forwards them on every call, enabled or not, and the hot path logs a few
// lines per root.

import { debuglog } from 'node:util';

const log = debuglog('imgmount');

export const debug: (format: string, ...args: unknown[]) => void = log.enabled ? log : () => undefined;
