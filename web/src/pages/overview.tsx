import { useEffect, useState } from 'preact/hooks';
import { apiGet, type DailyAnalytics, type SessionsPerDay } from '../api';
import { questions } from './overview_questions';
import { Bars, Card, Panel, SdkSnippet, TimeSeries, formatNumber } from '../components';
import { daysOf, type Range } from '../time';
import { useApi } from '../use_api';

function sum(m: Record<string, number>): number {
  return Object.values(m).reduce((a, b) => a + b, 0);
}

const WEEKDAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];

// App starts per (weekday, local hour), summed over the days of the range:
// rows Monday first. Day keys are local dates, so their weekday is the UTC one.
export function byWeekday(hours: Record<string, number[]>): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const w of WEEKDAYS) out[w] = Array(24).fill(0);
  for (const [d, counts] of Object.entries(hours)) {
    const w = WEEKDAYS[(new Date(d + 'T00:00:00Z').getUTCDay() + 6) % 7];
    counts.forEach((n, h) => (out[w][h] += n));
  }
  return out;
}

export function Overview(props: { app: string; range: Range }) {
  const { app, range } = props;
  const [byWeek, setByWeek] = useState(false);
  const q = questions(range);
  const key = `${app}|${range.start}|${range.end}|${range.utcOffset}`;
  const curRes = useApi(key, () => apiGet<DailyAnalytics>(app, ...q.current));
  const beforeRes = useApi(key, () => apiGet<DailyAnalytics>(app, ...q.previous));
  const sessionsRes = useApi(key, () => apiGet<SessionsPerDay>(app, ...q.sessions));
  // The cards are painted first, the charts, heatmap and breakdowns just
  // after (an effect runs once the cards are on screen): drawing them all
  // would hold the cards back.
  const [painted, setPainted] = useState('');
  useEffect(() => {
    if (curRes.data) setPainted(key);
  }, [curRes.data, key]);
  if (curRes.error) return <p class="error" role="alert">{curRes.error}</p>;
  if (!curRes.data) return <p class="muted" aria-busy="true">Loading…</p>;
  const cur = curRes.data;
  const before = beforeRes.data;
  const days = daysOf(range);
  const empty = cur.totalNumbers.users === 0 && cur.totalNumbers.installs === 0 && sum(cur.usage) === 0;
  // Nothing in range: the previous range tells an app without data (teach)
  // from a quiet period (show the zeros).
  if (empty && !before && !beforeRes.error) return <p class="muted" aria-busy="true">Loading…</p>;
  if (empty && before && before.totalNumbers.users === 0) {
    return (
      <section class="panel empty" data-testid="empty-state">
        <h2>No data in this range yet</h2>
        <p>Point a Nucleus SDK at this server and events show up here within a second:</p>
        <SdkSnippet appId={app} />
        <p class="muted small">Any Nucleus SDK works (JavaScript 3.x and 4.x): give it this app id and this server as its endpoint.</p>
      </section>
    );
  }
  const series = [
    { label: 'Active users', values: days.map((d) => cur.activeUsers[d] ?? 0) },
    { label: 'New users', values: days.map((d) => cur.newUsers[d] ?? 0) },
    { label: 'App starts', values: days.map((d) => cur.usage[d] ?? 0) },
  ];
  const perDay = sessionsRes.data;
  const sessionCounts = days.map((d) => perDay?.sessions[d] ?? 0);
  const pending = !before && !beforeRes.error;
  const durations = days.map((d) => cur.avgSessionDuration[d] ?? 0);
  const sessionDays = Object.keys(cur.avgSessionDuration).length;
  const meanDuration = sessionDays ? Object.values(cur.avgSessionDuration).reduce((a, b) => a + b, 0) / sessionDays : 0;
  const grid = byWeek ? byWeekday(cur.hours) : cur.hours;
  const rowsOf = Object.keys(grid);
  return (
    <div class="page">
      <div class="cards">
        <Card id="users" label="Users" value={cur.totalNumbers.users} previous={before?.totalNumbers.users} pending={pending} />
        <Card id="new-users" label="New users" value={sum(cur.newUsers)} previous={before && sum(before.newUsers)} pending={pending} />
        <Card id="installs" label="Installs" value={cur.totalNumbers.installs} previous={before?.totalNumbers.installs} pending={pending} />
        <Card id="app-starts" label="App starts" value={sum(cur.usage)} previous={before && sum(before.usage)} pending={pending} />
      </div>
      {beforeRes.error && <p class="error" role="alert">The previous range: {beforeRes.error}</p>}
      {painted !== key ? <p class="muted" aria-busy="true">Loading the charts…</p> : <>
      <Panel id="daily" title="Users, new users and app starts per day"
        table={{ columns: ['day', ...series.map((s) => s.label)], rows: days.map((d, i) => [d, ...series.map((s) => s.values[i])]) }}>
        <TimeSeries days={days} series={series} />
      </Panel>
      <Panel id="sessions" title={perDay ? `Sessions per day (${formatNumber(sum(perDay.sessions))} in the range)` : 'Sessions per day'}
        table={{ columns: ['day', 'sessions'], rows: perDay ? days.map((d, i) => [d, sessionCounts[i]]) : [] }}>
        {sessionsRes.error ? <p class="error" role="alert">{sessionsRes.error}</p>
          : perDay ? <TimeSeries days={days} series={[{ label: 'Sessions', values: sessionCounts }]} />
          : <p class="muted" aria-busy="true">Loading…</p>}
      </Panel>
      <Panel id="duration" title={`Average session duration (mean of days: ${formatNumber(Math.round(meanDuration))} s)`}
        table={{ columns: ['day', 'seconds'], rows: days.map((d, i) => [d, durations[i]]) }}>
        <TimeSeries days={days} series={[{ label: 'Seconds', values: durations }]} />
      </Panel>
      <Panel id="hours" title={`App starts by hour of day and ${byWeek ? 'weekday' : 'day'}`}
        table={{ columns: [byWeek ? 'weekday' : 'day', ...Array.from({ length: 24 }, (_, h) => String(h))], rows: rowsOf.map((d) => [d, ...grid[d]]) }}>
        <div class="chips" role="group" aria-label="Rows">
          <button type="button" aria-pressed={!byWeek} onClick={() => setByWeek(false)} data-testid="hours-by-day">By day</button>
          <button type="button" aria-pressed={byWeek} onClick={() => setByWeek(true)} data-testid="hours-by-weekday">By weekday</button>
        </div>
        <Heatmap hours={grid} weekdays={byWeek} />
      </Panel>
      <div class="grid2">
        {(['platforms', 'versions', 'countries', 'languages'] as const).map((k) => (
          <Panel id={k} title={k[0].toUpperCase() + k.slice(1)} table={{ columns: ['value', 'users'], rows: cur[k].map((v) => [v.value, v.count]) }}>
            <Bars id={k} items={cur[k]} empty={k === 'countries' ? 'No countries (loopback and private addresses have none).' : undefined} />
          </Panel>
        ))}
      </div>
      </>}
    </div>
  );
}

function Heatmap(props: { hours: Record<string, number[]>; weekdays: boolean }) {
  const days = Object.keys(props.hours);
  if (days.length === 0 || days.every((d) => props.hours[d].every((n) => n === 0))) {
    return <p class="muted">No app starts in this range.</p>;
  }
  const max = Math.max(1, ...days.flatMap((d) => props.hours[d]));
  return (
    <div class="table-wrap">
      <table class="heatmap" data-testid={props.weekdays ? 'heatmap-weekday' : 'heatmap-day'}>
        <thead>
          <tr>
            <th scope="col">{props.weekdays ? 'weekday' : 'day'}</th>
            {Array.from({ length: 24 }, (_, h) => (
              <th scope="col">{h}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {days.map((d) => (
            <tr>
              <th scope="row">{props.weekdays ? d : d.slice(5)}</th>
              {props.hours[d].map((n) => (
                <td title={`${d}: ${n}`} style={{ background: n ? `color-mix(in srgb, var(--accent) ${Math.round(15 + (85 * n) / max)}%, transparent)` : undefined }}>
                  {n || ''}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}


