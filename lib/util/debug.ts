// The library's debug log: NODE_DEBUG=imgmount.

import { debuglog } from 'node:util';

export const debug = debuglog('imgmount');
