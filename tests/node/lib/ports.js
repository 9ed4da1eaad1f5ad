// The ports the suites may bind: NUCLEON_TEST_PORTS=LO-HI keeps every port
// they choose (servers, ClickHouse, ports known to be closed) within LO..HI, so
// that test runs side by side on one machine each keep to a block of their
// own; unset, the kernel or a random draw picks them as before.
'use strict';

function testPortRange() {
  const text = process.env.NUCLEON_TEST_PORTS;
  if (!text) return null;
  const m = /^(\d+)-(\d+)$/.exec(text);
  const lo = m ? Number(m[1]) : 0, hi = m ? Number(m[2]) : 0;
  if (!m || lo < 1024 || hi > 65535 || hi - lo < 64) {
    throw new Error(`NUCLEON_TEST_PORTS must be LO-HI within 1024..65535 and span at least 65 ports, not ${text}`);
  }
  return { lo, hi };
}

module.exports = { testPortRange };
