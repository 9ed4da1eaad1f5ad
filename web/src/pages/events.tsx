import { useState } from 'preact/hooks';
import { apiGet } from '../api';
import { Panel, TimeSeries, formatNumber } from '../components';
import { daysOf, type Range } from '../time';
import { useApi } from '../use_api';

type EventsAnswer = Record<string, Record<string, number>>;

// Custom events (or errors, grouped by name): their totals in the range, and
// one name's count per day.
export function Events(props: { app: string; range: Range; errors?: boolean }) {
  const { app, range } = props;
  const kind = props.errors ? 'error' : 'event';
  const res = useApi(`${kind}|${app}|${range.start}|${range.end}|${range.utcOffset}`, () =>
    apiGet<EventsAnswer>(app, props.errors ? 'analytics/errors' : 'analytics/events', {
      start: range.start,
      end: range.end,
      utcOffset: range.utcOffset,
    }),
  );
  const [picked, setPicked] = useState('');
  if (res.error) return <p class="error" role="alert">{res.error}</p>;
  if (!res.data) return <p class="muted" aria-busy="true">Loading…</p>;
  const names = Object.keys(res.data);
  if (names.length === 0) {
    return (
      <section class="panel empty" data-testid={`${kind}s-empty`}>
        <h2>No {kind}s in this range</h2>
        {props.errors ? (
          <p>Errors come from the SDK's <code>Nucleus.trackError(name, error)</code> and from uncaught exceptions it reports.</p>
        ) : (
          <p>Custom events come from the SDK's <code>Nucleus.track('NAME', {'{ key: value }'})</code>.</p>
        )}
      </section>
    );
  }
  const totals = names.map((n) => ({ name: n, total: Object.values(res.data![n]).reduce((a, b) => a + b, 0) }));
  totals.sort((a, b) => b.total - a.total || (a.name < b.name ? -1 : 1));
  const name = names.includes(picked) ? picked : totals[0].name;
  const days = daysOf(range);
  const values = days.map((d) => res.data![name][d] ?? 0);
  return (
    <div class="page">
      <section class="panel" aria-labelledby="h-events">
        <h2 id="h-events">{props.errors ? 'Errors by name' : 'Events'}</h2>
        <div class="table-wrap">
          <table data-testid={`${kind}s-table`}>
            <thead>
              <tr>
                <th scope="col">{kind}</th>
                <th scope="col">count</th>
              </tr>
            </thead>
            <tbody>
              {totals.map((t) => (
                <tr aria-selected={t.name === name}>
                  <th scope="row">
                    <button type="button" class="link" onClick={() => setPicked(t.name)} data-testid={`${kind}-${t.name}`}>
                      {t.name}
                    </button>
                  </th>
                  <td data-testid={`${kind}-total-${t.name}`}>{formatNumber(t.total)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
       <Panel id={`${kind}-daily`} title={`${name} per day`} table={{ columns: ['day', name], rows: days.map((d, i) => [d, values[i]]) }}>
        <TimeSeries days={days} series={[{ label: name, values }]} />
      </Panel>
    </div>
  );
}
