// Fails the build when the JavaScript the first page loads (the scripts and
// module preloads index.html names) is over budget, gzip'd.
// Usage: node scripts/check-budget.mjs [DIST] (default: $NUCLEON_WEB_OUT or dist)
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const BUDGET_BYTES = 150 * 1024;
const dist = process.argv[2] ?? process.env.NUCLEON_WEB_OUT ?? 'dist';
const html = readFileSync(join(dist, 'index.html'), 'utf8');
const refs = [...html.matchAll(/<(?:script|link)\b[^>]*?(?:src|href)="([^"]+\.js)"/g)].map((m) => m[1]);
let total = 0;
for (const ref of new Set(refs)) {
  const size = gzipSync(readFileSync(join(dist, ref.replace(/^\//, ''))), { level: 9 }).length;
  total += size;
}
const kb = (n) => (n / 1024).toFixed(1);
if (refs.length === 0) {
  console.error('check-budget: index.html names no script');
  process.exit(1);
}
if (total > BUDGET_BYTES) {
  console.error(`check-budget: first page JavaScript is ${kb(total)} kB gzip'd; the budget is ${kb(BUDGET_BYTES)} kB`);
  process.exit(1);
}
console.log(`check-budget: first page JavaScript ${kb(total)} kB gzip'd (budget ${kb(BUDGET_BYTES)} kB)`);
