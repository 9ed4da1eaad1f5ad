// What the Overview asks the API, apart from the page (no view library): the
// page's first script (main.ts) asks it before the dashboard is loaded.
import { prefetch } from '../api';
import { previousRange, type Range } from '../time';

function params(r: Range) {
  return { start: r.start, end: r.end, utcOffset: r.utcOffset };
}

// The Overview's three questions: the range, the previous range of the same
// length (the cards' change) and the sessions per day. They are asked at once
// (as early as the page's script starts: prefetchOverview), and each part of
// the page is drawn as soon as its own answer is in.
export function questions(range: Range) {
  return {
    current: ['analytics', params(range)],
    previous: ['analytics', params(previousRange(range))],
    sessions: ['analytics/sessions', params(range)],
  } as const;
}

export function prefetchOverview(app: string, range: Range) {
  for (const [path, p] of Object.values(questions(range))) prefetch(app, path, p);
}

