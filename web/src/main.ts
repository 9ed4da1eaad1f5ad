// The page's first script, kept small so that it runs as soon as it arrives:
// it asks /api/session and the first page's questions at once (the session
// cookie authorises them; they need not wait for the session's answer), then
// starts the dashboard (app.tsx), which the page has been loading beside it.
// Were the app asked about not the account's, the page asks again and these
// answers go unused.
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { getSession } from './api';
import { lastApp, rangeOf, readState } from './state';
import { prefetchOverview } from './pages/overview_questions';

const firstSession = getSession();
firstSession.catch(() => undefined); // reported by the dashboard
const first = readState();
const app = first.app || lastApp();
if (first.page === 'overview' && app) prefetchOverview(app, rangeOf(first));

import('./app')
  .then((m) => m.start(firstSession))
  .catch((e) => {
    const root = document.getElementById('root') as HTMLElement;
    root.textContent = `The dashboard did not load: ${e instanceof Error ? e.message : String(e)}`;
  });
