import { apiGet, type ErrorGroup, type EventPropKeys, type ValueCount } from '../api';
import { Bars, Panel, TimeSeries, formatNumber } from '../components';
import { NO_PICKS, urlOf, type ViewState } from '../state';
import { daysOf, type Range } from '../time';
import { useApi } from '../use_api';

type EventsAnswer = Record<string, Record<string, number>>;

interface Props {
  app: string;
  range: Range;
  errors?: boolean;
  state: ViewState;
  update: (c: Partial<ViewState>) => void;
}

function rangeParams(r: Range) {
  return { start: r.start, end: r.end, utcOffset: r.utcOffset };
}

function rangeKey(app: string, r: Range): string {
  return `${app}|${r.start}|${r.end}|${r.utcOffset}`;
}

// Custom events (or errors, grouped by name): their totals in the range, and
// the picked name's count per day; for an event its property keys and the
// values of the picked key, for an error its users, first and last time and
// its latest occurrence.
export function Events(props: Props) {
  const { app, range, state, update } = props;
  const kind = props.errors ? 'error' : 'event';
  const res = useApi(`${kind}|${rangeKey(app, range)}`, () =>
    Promise.all([
      apiGet<EventsAnswer>(app, props.errors ? 'analytics/errors' : 'analytics/events', rangeParams(range)),
      props.errors ? apiGet<ErrorGroup[]>(app, 'analytics/errors/groups', rangeParams(range)) : Promise.resolve([]),
    ]),
  );
  if (res.error) return <p class="error" role="alert">{res.error}</p>;
  if (!res.data) return <p class="muted" aria-busy="true">Loading…</p>;
  const [counts, groups] = res.data;
  const names = Object.keys(counts);
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
  const totals = names.map((n) => ({ name: n, total: Object.values(counts[n]).reduce((a, b) => a + b, 0) }));
  totals.sort((a, b) => b.total - a.total || (a.name < b.name ? -1 : 1));
  const name = names.includes(state.event) ? state.event : totals[0].name;
  const days = daysOf(range);
  const values = days.map((d) => counts[name][d] ?? 0);
  const group = new Map(groups.map((g) => [g.name, g]));
  const pick = (n: string) => update({ event: n, attr: '' });
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
                {props.errors && (
                  <>
                    <th scope="col">users</th>
                    <th scope="col">first seen</th>
                    <th scope="col">last seen</th>
                  </>
                )}
              </tr>
            </thead>
            <tbody>
              {totals.map((t) => {
                const g = group.get(t.name);
                return (
                  <tr aria-selected={t.name === name}>
                    <th scope="row">
                      <button type="button" class="link" onClick={() => pick(t.name)} data-testid={`${kind}-${t.name}`}>
                        {t.name}
                      </button>
                    </th>
                    <td data-testid={`${kind}-total-${t.name}`}>{formatNumber(t.total)}</td>
                    {props.errors && (
                      <>
                        <td data-testid={`error-users-${t.name}`}>{g ? formatNumber(g.users) : ''}</td>
                        <td data-testid={`error-first-${t.name}`} title={g?.firstSeen}>{g ? new Date(g.firstSeen).toLocaleString() : ''}</td>
                        <td data-testid={`error-last-${t.name}`} title={g?.lastSeen}>{g ? new Date(g.lastSeen).toLocaleString() : ''}</td>
                      </>
                    )}
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      </section>
      <Panel id={`${kind}-daily`} title={`${name} per day`} table={{ columns: ['day', name], rows: days.map((d, i) => [d, values[i]]) }}>
        <TimeSeries days={days} series={[{ label: name, values }]} />
      </Panel>
      {props.errors
        ? group.get(name) && <ErrorSample group={group.get(name)!} state={state} update={update} />
        : <EventProps key={`${name}|${rangeKey(app, range)}`} {...props} name={name} />}
    </div>
  );
}

// The latest occurrence of an error: its message and stack, and whose it was.
function ErrorSample(props: { group: ErrorGroup; state: ViewState; update: (c: Partial<ViewState>) => void }) {
  const { group: g, state } = props;
  const s = g.sample;
  const target: Partial<ViewState> = { ...NO_PICKS, page: 'users', user: s.userId, session: s.sessionId, device: s.deviceId };
  const open = (e: MouseEvent) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
    e.preventDefault();
    props.update(target);
  };
  return (
    <section class="panel" aria-labelledby="h-sample" data-testid="error-sample">
      <h2 id="h-sample">Latest {g.name}</h2>
      <dl class="facts">
        <dt>time</dt>
        <dd title={s.time}>{new Date(s.time).toLocaleString()}</dd>
        <dt>user</dt>
        <dd>
          <a href={urlOf({ ...state, ...target })} onClick={open} data-testid="error-sample-user">{s.userId}</a> <span class="muted small">session {s.sessionId} on {s.deviceId}</span>
        </dd>
        <dt>message</dt>
        <dd data-testid="error-sample-message">{s.message || <span class="muted">none</span>}</dd>
      </dl>
      {s.stack ? <pre class="stack" data-testid="error-sample-stack">{s.stack}</pre> : <p class="muted small">No stack was sent.</p>}
    </section>
  );
}

// An event's property keys in the range, and the values of the picked one.
function EventProps(props: Props & { name: string }) {
  const { app, range, state, update, name } = props;
  const res = useApi(`props|${rangeKey(app, range)}`, () => apiGet<EventPropKeys[]>(app, 'analytics/eventsprops', rangeParams(range)));
  if (res.error) return <p class="error" role="alert">{res.error}</p>;
  if (!res.data) return <p class="muted" aria-busy="true">Loading…</p>;
  const keys = res.data.filter((p) => p.event === name).flatMap((p) => p.keys.map((k) => ({ key: k, type: p.type })));
  keys.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.type < b.type ? -1 : 1));
  const attr = keys.some((k) => k.key === state.attr) ? state.attr : (keys[0]?.key ?? '');
  return (
    <section class="panel" aria-labelledby="h-props" data-testid="event-props">
      <h2 id="h-props">Properties of {name}</h2>
      {keys.length === 0 ? (
        <p class="muted">No properties on {name} in this range. Send them with <code>Nucleus.track('{name}', {'{ key: value }'})</code>.</p>
      ) : (
        <>
          <div class="chips" role="group" aria-label="Property">
            {keys.map((k) => (
              <button type="button" aria-pressed={k.key === attr} data-testid={`prop-${k.key}`} onClick={() => update({ attr: k.key })}>
                {k.key} <span class="muted small">{k.type}</span>
              </button>
            ))}
          </div>
          {attr && <Values key={`${name}|${attr}`} {...props} attr={attr} />}
        </>
      )}
    </section>
  );
}

function Values(props: Props & { name: string; attr: string }) {
  const { app, range, name, attr } = props;
  const res = useApi(`values|${rangeKey(app, range)}|${name}|${attr}`, () =>
    apiGet<ValueCount[]>(app, `analytics/events/${encodeURIComponent(name)}/${encodeURIComponent(attr)}`, rangeParams(range)),
  );
  if (res.error) return <p class="error" role="alert">{res.error}</p>;
  if (!res.data) return <p class="muted" aria-busy="true">Loading…</p>;
  const values = res.data;
  return (
    <Panel id="values" title={`${attr}: events per value`} table={{ columns: ['value', 'events'], rows: values.map((v) => [v.value, v.count]) }}>
      <Bars id="values" items={values} />
      {values.length > 10 && <p class="muted small">The 10 most frequent of {formatNumber(values.length)} values; the table has them all.</p>}
    </Panel>
  );
}
