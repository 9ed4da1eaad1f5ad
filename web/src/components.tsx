// Building blocks shared by the pages: cards, a uPlot time series, HTML bars,
// and the table + CSV view every chart offers.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { ComponentChildren } from 'preact';
import uPlot from 'uplot';
import { dayMs } from './time';

export function formatNumber(n: number): string {
  return Number.isInteger(n) ? n.toLocaleString('en-US') : n.toLocaleString('en-US', { maximumFractionDigits: 1 });
}

// "+50%", "−20%", "new" (from 0), "" (0 to 0).
export function change(now: number, before: number): { text: string; dir: 'up' | 'down' | 'same' } {
  if (before === 0) return now === 0 ? { text: '±0%', dir: 'same' } : { text: 'new', dir: 'up' };
  const pct = Math.round(((now - before) / before) * 100);
  if (pct === 0) return { text: '±0%', dir: 'same' };
  return { text: `${pct > 0 ? '+' : '−'}${Math.abs(pct)}%`, dir: pct > 0 ? 'up' : 'down' };
}

// `pending`: the previous period's number is still on its way (its line is
// kept, so the card does not grow when it comes).
export function Card(props: { id: string; label: string; value: number; previous?: number; pending?: boolean; hint?: string }) {
  const c = props.previous === undefined ? null : change(props.value, props.previous);
  return (
    <div class="card" data-testid={`card-${props.id}`}>
      <div class="card-label">{props.label}</div>
      <div class="card-value" data-testid={`card-${props.id}-value`}>
        {formatNumber(props.value)}
      </div>
      {c && (
        <div class={`card-change ${c.dir}`} title={`previous period: ${formatNumber(props.previous ?? 0)}`}>
          {c.text} <span class="muted">vs previous {formatNumber(props.previous ?? 0)}</span>
        </div>
      )}
      {!c && props.pending && (
        <div class="card-change muted" aria-busy="true">
          vs previous …
        </div>
      )}
      {props.hint && <div class="muted small">{props.hint}</div>}
    </div>
  );
}

export interface Table {
  columns: string[];
  rows: (string | number)[][];
}

function csvCell(v: string | number): string {
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(t: Table): string {
  return [t.columns, ...t.rows].map((r) => r.map(csvCell).join(',')).join('\n') + '\n';
}

// A table's header row; "" is a column of actions (named for screen readers only).
export function Head(props: { columns: string[] }) {
  return (
    <thead>
      <tr>
        {props.columns.map((c) => (
          <th scope="col">{c || <span class="sr-only">actions</span>}</th>
        ))}
      </tr>
    </thead>
  );
}

export function DataTable(props: { table: Table; testid?: string }) {
  return (
    <div class="table-wrap">
      <table data-testid={props.testid}>
        <thead>
          <tr>
            {props.table.columns.map((c) => (
              <th scope="col">{c}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {props.table.rows.map((r) => (
            <tr>
              {r.map((v, i) => (i === 0 ? <th scope="row">{v}</th> : <td>{typeof v === 'number' ? formatNumber(v) : v}</td>))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

// A panel holding a chart, with a switch to its numbers as a table and a CSV download.
export function Panel(props: { id: string; title: string; table: Table; children: ComponentChildren }) {
  const [asTable, setAsTable] = useState(false);
  const download = () => {
    const url = URL.createObjectURL(new Blob([toCsv(props.table)], { type: 'text/csv' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = `${props.id}.csv`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };
  return (
    <section class="panel" data-testid={`panel-${props.id}`} aria-labelledby={`h-${props.id}`}>
      <header class="panel-head">
        <h2 id={`h-${props.id}`}>{props.title}</h2>
        <div class="panel-tools">
          <button type="button" aria-pressed={asTable} onClick={() => setAsTable(!asTable)} data-testid={`toggle-${props.id}`}>
            {asTable ? 'Chart' : 'Table'}
          </button>
          <button type="button" onClick={download} data-testid={`csv-${props.id}`}>
            CSV
          </button>
        </div>
      </header>
      {asTable ? <DataTable table={props.table} testid={`table-${props.id}`} /> : props.children}
    </section>
  );
}

// The theme's colours, read once per colour scheme: each read of computed
// style after a chart was added to the page would lay the page out again.
const themes = new Map<string, Record<string, string>>();
function cssVar(name: string): string {
  const scheme = matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  let theme = themes.get(scheme);
  if (!theme) {
    const style = getComputedStyle(document.documentElement);
    theme = {};
    for (const v of ['--series-1', '--series-2', '--series-3', '--series-4', '--muted', '--grid']) {
      theme[v] = style.getPropertyValue(v).trim() || '#888';
    }
    themes.set(scheme, theme);
  }
  return theme[name] ?? '#888';
}

// Days on the x axis (keys "YYYY-MM-DD"), one line per series.
// Drawn after the page's numbers are painted (an effect: drawing takes a
// while, the numbers need not wait for it).
export function TimeSeries(props: { days: string[]; series: { label: string; values: number[] }[] }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const colors = ['--series-1', '--series-2', '--series-3', '--series-4'].map(cssVar);
    const axis = { stroke: cssVar('--muted'), grid: { stroke: cssVar('--grid') }, ticks: { stroke: cssVar('--grid') } };
    const width = () => Math.max(200, el.clientWidth);
    const plot = new uPlot(
      {
        width: width(),
        height: 220,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
        axes: [
          {
            ...axis,
            incrs: [86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400],
            values: (_u, splits) => splits.map((s) => new Date(s * 1000).toISOString().slice(5, 10)),
          },
          axis,
        ],
        series: [
          { label: 'day', value: (_u, v) => (v == null ? '' : new Date(v * 1000).toISOString().slice(0, 10)) },
          ...props.series.map((s, i) => ({ label: s.label, stroke: colors[i % colors.length], width: 2, points: { show: props.days.length < 40 } })),
        ],
      },
      [props.days.map((d) => dayMs(d) / 1000), ...props.series.map((s) => s.values)],
      el,
    );
    const ro = new ResizeObserver(() => plot.setSize({ width: width(), height: 220 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.destroy();
    };
  }, [JSON.stringify(props)]);
  return <div class="chart" ref={box} role="img" aria-label={props.series.map((s) => s.label).join(', ') + ' per day'} />;
}

// A top-N list as HTML bars.
export function Bars(props: { id: string; items: { value: string; count: number }[]; empty?: string }) {
  const max = Math.max(1, ...props.items.map((i) => i.count));
  if (props.items.length === 0) return <p class="muted">{props.empty ?? 'Nothing in this range.'}</p>;
  return (
    <ul class="bars" data-testid={`bars-${props.id}`}>
      {props.items.slice(0, 10).map((i) => (
        <li>
          <span class="bar-label">{i.value}</span>
          <span class="bar-track">
            <span class="bar" style={{ width: `${(i.count / max) * 100}%` }} />
          </span>
          <span class="bar-count" data-testid={`bar-${props.id}-${i.value}`}>
            {formatNumber(i.count)}
          </span>
        </li>
      ))}
    </ul>
  );
}

export function SdkSnippet(props: { appId: string }) {
  const ws = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`;
  return (
    <pre class="snippet" data-testid="sdk-snippet">
      <code>{`npm install nucleus-analytics

const Nucleus = require('nucleus-analytics')
Nucleus.init('${props.appId}', { endpoint: '${ws}' })
Nucleus.track('SIGNED_UP')`}</code>
    </pre>
  );
}
