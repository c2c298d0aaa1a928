// The agent-trigger page: triggers, deliveries and executions from this server's API.
//
// Everything the API returns is shown as text (textContent and text nodes, never parsed as HTML):
// bodies, headers, actions, prompts and output are written by whoever calls a trigger. The key
// lives in this tab's sessionStorage and travels only in the Authorization header of fetch().
'use strict';

(() => {
  const KEY_SLOT = 'agent-trigger.key';
  // One request per open view every POLL_MS while the tab is visible, none while it is hidden.
  const POLL_MS = 2000;
  // The triggers' counts cover a day and cost the server most per request: every 10 s is plenty.
  const TRIGGERS_POLL_MS = 10000;
  const PAGE_SIZE = 50;
  const OUTCOMES = [
    'started', 'replayed', 'joined', 'skipped', 'filtered', 'challenge', 'rejected',
    'invalid_signature', 'invalid_json', 'payload_too_large', 'unsupported_media_type',
    'rate_limited', 'unavailable', 'internal_error',
  ];
  const STATUSES = ['queued', 'running', 'done', 'error', 'failed', 'interrupted', 'cancelled'];
  const UNFINISHED = new Set(['queued', 'running']);

  // Bumped on every navigation: answers and timers of a view that was left are dropped.
  let generation = 0;
  let pollTimer = null;

  // Violations of the page's Content-Security-Policy, counted where a test or an operator
  // can read them: there should never be any.
  let violations = 0;
  document.addEventListener('securitypolicyviolation', () => {
    violations += 1;
    document.documentElement.dataset.cspViolations = String(violations);
  });

  // ---------------------------------------------------------------- the DOM, as text only

  /** An element with attributes (strings set as attributes, functions as listeners) and
   *  children (nodes, or strings that become text nodes). */
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (typeof value === 'function') node.addEventListener(name, value);
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    node.replaceChildren();
    return node;
  }

  const view = () => document.getElementById('view');

  function say(message, kind) {
    const status = document.getElementById('status');
    status.textContent = message || '';
    status.dataset.kind = kind || 'info';
  }

  function sayError(error) {
    if (error instanceof KeyRefused) return;
    say(error instanceof ApiError ? error.message : `The server could not be reached (${error.message}).`, 'error');
  }

  // ---------------------------------------------------------------- the API

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  class KeyRefused extends Error {}

  const key = () => sessionStorage.getItem(KEY_SLOT);

  /** A JSON answer of the API; a 401 forgets the key, other failures throw an ApiError
   *  carrying the server's own `error` sentence. */
  async function api(method, path) {
    const response = await fetch(path, {
      method,
      headers: { authorization: `Bearer ${key()}`, accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (response.status === 401) {
      forgetKey('The server refused this key: enter a valid one.');
      throw new KeyRefused('key refused');
    }
    if (!response.ok) {
      const reason = body && typeof body.error === 'string' ? body.error : response.statusText;
      throw new ApiError(response.status, `${response.status}: ${reason}`);
    }
    return body;
  }

  const path = (base, params) => {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) if (value) query.set(name, value);
    const text = query.toString();
    return text ? `${base}?${text}` : base;
  };

  // ---------------------------------------------------------------- pieces of views

  /** An id shown whole, as a link when `href` is given, with a button that copies it. */
  function idField(id, href) {
    if (!id) return el('span', { class: 'none' }, '—');
    const text = el(href ? 'a' : 'code', href ? { href, class: 'id' } : { class: 'id' }, String(id));
    const button = el('button', {
      type: 'button',
      class: 'copy',
      'aria-label': `Copy ${id}`,
      click: () => copy(String(id), text, button),
    }, 'Copy');
    return el('span', { class: 'id-field' }, text, button);
  }

  function copy(value, shown, button) {
    const done = () => {
      button.textContent = 'Copied';
      setTimeout(() => { button.textContent = 'Copy'; }, 1500);
    };
    const select = () => {
      // Without the clipboard API (a page not served from localhost or over HTTPS), select
      // the id so that Ctrl+C copies it.
      window.getSelection().selectAllChildren(shown);
      say('The id is selected: press Ctrl+C (⌘C) to copy it.');
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(value).then(done, select);
    } else {
      select();
    }
  }

  const badgeName = (name) => (/^[a-z_]+$/.test(name) ? name : 'other');

  function badge(kind, name) {
    const label = name === null || name === undefined ? '—' : String(name);
    return el('span', { class: `badge ${kind}-${badgeName(label)}` }, label);
  }

  function time(value) {
    if (!value) return el('span', { class: 'none' }, '—');
    const date = new Date(value);
    const shown = Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
    return el('time', { datetime: String(value), title: String(value) }, shown);
  }

  function details(rows) {
    return el('dl', { class: 'details' }, rows.map(([term, value]) => [
      el('dt', {}, term),
      el('dd', {}, value === null || value === undefined || value === '' ? el('span', { class: 'none' }, '—') : value),
    ]));
  }

  function heading(text, ...extra) {
    return el('div', { class: 'heading' }, el('h1', { id: 'view-title', tabindex: -1 }, text), ...extra);
  }

  function caller(value) {
    if (!value || typeof value !== 'object') return '—';
    return value.id ? `${value.kind} ${value.id}` : String(value.kind);
  }

  function select(id, label, choices, chosen, onChange) {
    // A filter from the address that the list does not offer is still shown as chosen.
    if (chosen && !choices.some(([value]) => value === chosen)) choices = [...choices, [chosen, chosen]];
    return el('label', { class: 'filter', for: id }, label,
      el('select', { id, change: (event) => onChange(event.target.value) },
        el('option', { value: '' }, 'all'),
        choices.map(([value, text]) => el('option', { value, selected: value === chosen }, text))));
  }

  /** A table whose rows are kept by key between polls: a row is rebuilt only when its data
   *  changed and moved only when its place did, so that focus and selection survive. */
  function liveTable(columns, emptyText) {
    const body = el('tbody');
    const rows = new Map();
    const table = el('table', { class: 'list' },
      el('thead', {}, el('tr', {}, columns.map(([title]) => el('th', { scope: 'col' }, title)))),
      body);
    const empty = el('p', { class: 'none' }, emptyText);
    const update = (items, keyOf) => {
      const seen = new Set();
      items.forEach((item, index) => {
        const itemKey = keyOf(item);
        const signature = JSON.stringify(item);
        seen.add(itemKey);
        let entry = rows.get(itemKey);
        if (!entry || entry.signature !== signature) {
          const row = el('tr', { 'data-id': itemKey },
            columns.map(([title, cell]) => el('td', { 'data-label': title }, cell(item))));
          if (entry) entry.row.replaceWith(row);
          entry = { row, signature };
          rows.set(itemKey, entry);
        }
        if (body.children[index] !== entry.row) body.insertBefore(entry.row, body.children[index] || null);
      });
      for (const [itemKey, entry] of rows) {
        if (!seen.has(itemKey)) {
          entry.row.remove();
          rows.delete(itemKey);
        }
      }
      empty.hidden = items.length > 0;
      table.hidden = items.length === 0;
    };
    return { node: el('div', { class: 'scroll' }, table, empty), update };
  }

  /** Runs `load` now and `every` ms after the previous run ended, while this view is
   *  shown; a hidden tab skips the requests. `load` answers false to stop. */
  function live(load, every = POLL_MS) {
    const mine = generation;
    const tick = async () => {
      if (mine !== generation) return;
      let again = true;
      if (!document.hidden) {
        try {
          again = (await load()) !== false;
        } catch (error) {
          if (mine === generation) sayError(error);
        }
      }
      if (mine === generation && again) pollTimer = setTimeout(tick, every);
    };
    tick();
  }

  // The trigger list, for the filters; fetched once per key.
  let triggerList = null;
  async function triggers() {
    if (!triggerList) {
      const answer = await api('GET', '/api/triggers');
      triggerList = Array.isArray(answer && answer.triggers) ? answer.triggers : [];
    }
    return triggerList;
  }

  async function triggerChoices() {
    try {
      return (await triggers()).map((trigger) => [String(trigger.id), `${trigger.id} (${trigger.source})`]);
    } catch (error) {
      if (error instanceof KeyRefused) throw error;
      return [];
    }
  }

  // ---------------------------------------------------------------- the views

  async function triggersView(mine) {
    const table = liveTable([
      ['Trigger', (trigger) => idField(trigger.id)],
      ['Source', (trigger) => String(trigger.source)],
      ['Enabled', (trigger) => (trigger.enabled ? 'yes' : 'no')],
      ['Last 24 h', (trigger) => counts(trigger)],
      ['Show', (trigger) => el('span', { class: 'links' },
        el('a', { href: path('#/deliveries', { triggerId: trigger.id }) }, 'deliveries'),
        el('a', { href: path('#/executions', { triggerId: trigger.id }) }, 'executions'))],
    ], 'This key reaches no trigger.');
    show(mine, heading('Triggers'), table.node);
    live(async () => {
      const answer = await api('GET', '/api/triggers');
      if (mine !== generation) return false;
      triggerList = Array.isArray(answer.triggers) ? answer.triggers : [];
      table.update(triggerList, (trigger) => String(trigger.id));
      return true;
    }, TRIGGERS_POLL_MS);
  }

  /** A trigger's deliveries over the last 24 h, by outcome. */
  function counts(trigger) {
    const byOutcome = trigger.counts || trigger.outcomes || {};
    const entries = Array.isArray(byOutcome)
      ? byOutcome.map((entry) => [entry.outcome, entry.count])
      : Object.entries(byOutcome);
    const shown = entries.filter(([, count]) => Number(count) > 0);
    if (shown.length === 0) return el('span', { class: 'none' }, 'no deliveries');
    return el('span', { class: 'counts' }, shown.map(([outcome, count]) =>
      el('a', { href: path('#/deliveries', { triggerId: trigger.id, outcome }), class: `badge outcome-${badgeName(String(outcome))}` },
        `${outcome} ${count}`)));
  }

  async function deliveriesView(mine, params) {
    const filters = { triggerId: params.get('triggerId') || '', outcome: params.get('outcome') || '' };
    const refilter = (name) => (value) => { location.hash = path('#/deliveries', { ...filters, [name]: value }); };
    const table = liveTable([
      ['Received', (delivery) => time(delivery.receivedAt)],
      ['Outcome', (delivery) => el('span', {}, badge('outcome', delivery.outcome), ' ', el('span', { class: 'muted' }, String(delivery.status ?? '')))],
      ['Delivery', (delivery) => idField(delivery.id, `#/deliveries/${encodeURIComponent(delivery.id)}`)],
      ['Trigger', (delivery) => idField(delivery.triggerId)],
      ['Action', (delivery) => (delivery.action ? String(delivery.action) : el('span', { class: 'none' }, '—'))],
      ['Caller', (delivery) => caller(delivery.caller)],
      ['Execution', (delivery) => idField(delivery.executionId, delivery.executionId && `#/executions/${encodeURIComponent(delivery.executionId)}`)],
    ], 'No delivery yet: new ones appear here as they arrive.');
    const choices = await triggerChoices();
    if (mine !== generation) return;
    const older = el('button', { type: 'button', id: 'older', hidden: true, click: () => loadOlder() }, 'Show older');
    show(mine,
      heading('Deliveries', el('span', { class: 'muted live' }, 'live')),
      el('div', { class: 'filters' },
        select('filter-trigger', 'Trigger', choices, filters.triggerId, refilter('triggerId')),
        select('filter-outcome', 'Outcome', OUTCOMES.map((name) => [name, name]), filters.outcome, refilter('outcome'))),
      table.node,
      older);

    // Every delivery fetched so far, newest first; the first page is fetched again each poll.
    const known = new Map();
    let cursor = null;
    let pagedOlder = false;
    const render = () => {
      const all = [...known.values()].sort((a, b) => (String(b.receivedAt).localeCompare(String(a.receivedAt)) || String(b.id).localeCompare(String(a.id))));
      table.update(all, (delivery) => String(delivery.id));
      older.hidden = !cursor;
    };
    const loadOlder = async () => {
      try {
        const answer = await api('GET', path('/api/deliveries', { ...filters, limit: PAGE_SIZE, cursor }));
        if (mine !== generation) return;
        pagedOlder = true;
        for (const delivery of answer.deliveries || []) known.set(String(delivery.id), delivery);
        cursor = answer.nextCursor || null;
        render();
      } catch (error) {
        sayError(error);
      }
    };
    live(async () => {
      const answer = await api('GET', path('/api/deliveries', { ...filters, limit: PAGE_SIZE }));
      if (mine !== generation) return false;
      for (const delivery of answer.deliveries || []) known.set(String(delivery.id), delivery);
      if (!pagedOlder) cursor = answer.nextCursor || null;
      render();
      return true;
    });
  }

  async function deliveryView(mine, id) {
    const delivery = await api('GET', `/api/deliveries/${encodeURIComponent(id)}`);
    if (mine !== generation) return;
    const result = el('p', { id: 'redeliver-result', class: 'result', role: 'status' });
    const redeliver = el('button', { type: 'button', id: 'redeliver', click: async () => {
      redeliver.disabled = true;
      result.textContent = 'Redelivering…';
      try {
        const answer = await api('POST', `/api/deliveries/${encodeURIComponent(id)}/redeliver`);
        clear(result);
        if (answer && answer.executionId) {
          append(result, ['Redelivered: execution ', idField(answer.executionId, `#/executions/${encodeURIComponent(answer.executionId)}`)]);
        } else {
          append(result, ['Redelivered, and nothing started: ', describeAnswer(answer)]);
        }
      } catch (error) {
        result.textContent = error instanceof ApiError ? `Not redelivered: ${error.message}` : '';
        sayError(error);
      } finally {
        redeliver.disabled = false;
      }
    } }, 'Redeliver');
    if (delivery.body === null) {
      redeliver.disabled = true;
      result.textContent = 'Its body was not kept, so it cannot be redelivered.';
    }
    show(mine,
      heading('Delivery', el('a', { href: '#/deliveries', class: 'back' }, 'All deliveries')),
      el('div', { class: 'split' }, el('div', {}, details([
        ['Id', idField(delivery.id)],
        ['Received', time(delivery.receivedAt)],
        ['Outcome', el('span', { id: 'delivery-outcome' }, badge('outcome', delivery.outcome), ' ', el('span', { class: 'muted' }, `HTTP ${delivery.status}`))],
        ['Reason', delivery.reason ? el('span', { id: 'delivery-reason' }, String(delivery.reason)) : null],
        ['Trigger', idField(delivery.triggerId)],
        ['Source', delivery.source ? String(delivery.source) : null],
        ['Caller', caller(delivery.caller)],
        ['Sender’s delivery id', delivery.deliveryId ? idField(delivery.deliveryId) : null],
        ['Action', delivery.action ? String(delivery.action) : null],
        ['Execution', delivery.executionId ? idField(delivery.executionId, `#/executions/${encodeURIComponent(delivery.executionId)}`) : null],
        ['Body size', delivery.bodyBytes === undefined || delivery.bodyBytes === null ? null : `${delivery.bodyBytes} bytes`],
        ['Answered in', delivery.durationMs === undefined || delivery.durationMs === null ? null : `${delivery.durationMs} ms`],
      ]),
      el('div', { class: 'actions' }, redeliver),
      result),
      el('div', {},
        el('h2', {}, 'Body'),
        bodyBlock(delivery),
        el('h2', {}, 'Headers'),
        headersTable(delivery.headers))));
  }

  /** What an answer without an execution says: its skip reason, or the answer itself. */
  function describeAnswer(answer) {
    if (answer && typeof answer === 'object') {
      for (const field of ['reason', 'skipped', 'message', 'error']) {
        if (typeof answer[field] === 'string') return answer[field];
      }
    }
    return JSON.stringify(answer);
  }

  function headersTable(headers) {
    let pairs = [];
    if (Array.isArray(headers)) {
      pairs = headers.map((header) => (Array.isArray(header) ? header : [header.name, header.value]));
    } else if (headers && typeof headers === 'object') {
      pairs = Object.entries(headers).flatMap(([name, value]) => (Array.isArray(value) ? value.map((one) => [name, one]) : [[name, value]]));
    }
    if (pairs.length === 0) return el('p', { class: 'none' }, 'No headers were recorded.');
    return el('div', { class: 'scroll' }, el('table', { class: 'headers', id: 'delivery-headers' },
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Name'), el('th', { scope: 'col' }, 'Value'))),
      el('tbody', {}, pairs.map(([name, value]) => el('tr', {},
        el('td', { 'data-label': 'Name' }, el('code', {}, String(name))),
        el('td', { 'data-label': 'Value' }, el('code', {}, String(value))))))));
  }

  /** The body, pretty-printed when it is JSON, always as text. */
  function bodyBlock(delivery) {
    const body = delivery.body;
    if (body === undefined || body === null) {
      return el('p', { class: 'none', id: 'delivery-body' },
        'The body was not kept (it is kept only for requests that authenticated).');
    }
    if (delivery.bodyEncoding === 'base64') {
      return el('div', {},
        el('p', { class: 'muted' }, 'Not UTF-8 text: shown in base64.'),
        el('pre', { class: 'block', id: 'delivery-body', tabindex: 0 }, String(body)));
    }
    let text = typeof body === 'string' ? body : JSON.stringify(body, null, 2);
    if (typeof body === 'string') {
      try {
        text = JSON.stringify(JSON.parse(body), null, 2);
      } catch (_) {
        // Not JSON (a form, or invalid JSON): shown as it came.
      }
    }
    return el('pre', { class: 'block', id: 'delivery-body', tabindex: 0 }, text);
  }

  async function executionsView(mine, params) {
    const filters = { triggerId: params.get('triggerId') || '', status: params.get('status') || '' };
    const refilter = (name) => (value) => { location.hash = path('#/executions', { ...filters, [name]: value }); };
    const table = liveTable([
      ['Created', (execution) => time(execution.createdAt)],
      ['Status', (execution) => badge('status', execution.status)],
      ['Attempt', (execution) => String(execution.attempt ?? '')],
      ['Execution', (execution) => idField(execution.executionId, `#/executions/${encodeURIComponent(execution.executionId)}`)],
      ['Trigger', (execution) => idField(execution.triggerId)],
      ['Action', (execution) => (execution.action ? String(execution.action) : el('span', { class: 'none' }, '—'))],
    ], 'No execution yet.');
    const choices = await triggerChoices();
    if (mine !== generation) return;
    show(mine,
      heading('Executions', el('span', { class: 'muted live' }, 'live')),
      el('div', { class: 'filters' },
        select('filter-trigger', 'Trigger', choices, filters.triggerId, refilter('triggerId')),
        select('filter-status', 'Status', STATUSES.map((name) => [name, name]), filters.status, refilter('status'))),
      table.node);
    live(async () => {
      const answer = await api('GET', path('/api/executions', { ...filters, limit: PAGE_SIZE }));
      if (mine !== generation) return false;
      table.update(answer.executions || [], (execution) => String(execution.executionId));
      return true;
    });
  }

  async function executionView(mine, id) {
    const status = el('span', { id: 'execution-status' });
    const attempt = el('span', { id: 'execution-attempt' });
    const started = el('span');
    const finished = el('span');
    const exitCode = el('span');
    const cancelledBy = el('span');
    const output = el('pre', { class: 'block output', id: 'execution-output', tabindex: 0, 'aria-live': 'off' });
    const prompt = el('div');
    const result = el('p', { id: 'execution-result', class: 'result', role: 'status' });
    const cancel = el('button', { type: 'button', id: 'cancel', click: async () => {
      cancel.disabled = true;
      result.textContent = 'Cancelling…';
      try {
        const answer = await api('POST', `/api/executions/${encodeURIComponent(id)}/cancel`);
        result.textContent = `Cancelled (${answer.status}).`;
        if (mine === generation) refresh(answer);
      } catch (error) {
        result.textContent = error instanceof ApiError ? `Not cancelled: ${error.message}` : '';
        sayError(error);
        cancel.disabled = false;
      }
    } }, 'Cancel');
    const replay = el('button', { type: 'button', id: 'replay', click: async () => {
      replay.disabled = true;
      result.textContent = 'Replaying…';
      try {
        const answer = await api('POST', `/api/executions/${encodeURIComponent(id)}/replay`);
        location.hash = `#/executions/${encodeURIComponent(answer.executionId)}`;
        say(`Replayed ${id} as a new execution.`);
      } catch (error) {
        result.textContent = error instanceof ApiError ? `Not replayed: ${error.message}` : '';
        sayError(error);
        replay.disabled = false;
      }
    } }, 'Replay');

    let lastOutput = null;
    const refresh = (execution) => {
      status.replaceChildren(badge('status', execution.status));
      attempt.textContent = String(execution.attempt ?? '—');
      started.replaceChildren(time(execution.startedAt));
      finished.replaceChildren(time(execution.finishedAt));
      exitCode.textContent = execution.exitCode === null || execution.exitCode === undefined ? '—' : String(execution.exitCode);
      cancelledBy.textContent = execution.cancelledBy ? String(execution.cancelledBy) : '—';
      cancel.disabled = !UNFINISHED.has(execution.status);
      if (typeof execution.output === 'string' && execution.output !== lastOutput) {
        // Follow the tail while the reader is at the bottom, as a terminal does.
        const atBottom = output.scrollHeight - output.scrollTop - output.clientHeight < 24;
        output.textContent = execution.output || '(no output yet)';
        lastOutput = execution.output;
        if (atBottom) output.scrollTop = output.scrollHeight;
      }
      if (execution.prompt !== undefined) {
        prompt.replaceChildren(execution.prompt === null
          ? el('p', { class: 'none' }, 'The trigger has no prompt.')
          : el('pre', { class: 'block', id: 'execution-prompt', tabindex: 0 }, String(execution.prompt)));
      }
    };

    const first = await api('GET', `/api/executions/${encodeURIComponent(id)}`);
    if (mine !== generation) return;
    show(mine,
      heading('Execution', el('a', { href: '#/executions', class: 'back' }, 'All executions')),
      el('div', { class: 'split' }, el('div', {}, details([
        ['Id', idField(first.executionId)],
        ['Status', status],
        ['Attempt', attempt],
        ['Trigger', idField(first.triggerId, path('#/executions', { triggerId: first.triggerId }))],
        ['Source', String(first.source ?? '')],
        ['Action', first.action ? String(first.action) : null],
        ['Created', time(first.createdAt)],
        ['Started', started],
        ['Finished', finished],
        ['Exit code', exitCode],
        ['Replay of', first.replayOf ? idField(first.replayOf, `#/executions/${encodeURIComponent(first.replayOf)}`) : null],
        ['Replayed by', first.replayedBy ? String(first.replayedBy) : null],
        ['Cancelled by', cancelledBy],
      ]),
      el('div', { class: 'actions' }, cancel, replay),
      result),
      el('div', {},
        el('h2', {}, 'Output ', el('span', { class: 'muted' }, '(the kept tail, live while it runs)')),
        output,
        el('h2', {}, 'Prompt'),
        prompt)));
    refresh(first);
    // Polled while it may still change; a finished execution costs no more requests.
    live(async () => {
      const execution = await api('GET', `/api/executions/${encodeURIComponent(id)}`);
      if (mine !== generation) return false;
      refresh(execution);
      return UNFINISHED.has(execution.status);
    });
  }

  // ---------------------------------------------------------------- navigation and the key

  /** Shows a view's nodes, unless the operator has moved on meanwhile; the control that had
   *  the focus before (a filter) gets it back, else the view's title takes it. */
  function show(mine, ...nodes) {
    if (mine !== generation) return;
    const focused = document.activeElement && document.activeElement.id;
    const target = clear(view());
    append(target, nodes);
    target.hidden = false;
    const again = focused && document.getElementById(focused);
    if (again && target.contains(again)) {
      again.focus();
    } else if (!document.activeElement || document.activeElement === document.body) {
      // The control that had the focus went with the old view: start the new one at its title.
      const title = document.getElementById('view-title');
      if (title) title.focus({ preventScroll: true });
    }
  }

  async function route() {
    generation += 1;
    const mine = generation;
    clearTimeout(pollTimer);
    say('');
    const signedIn = Boolean(key());
    document.getElementById('login').hidden = signedIn;
    document.getElementById('nav').hidden = !signedIn;
    document.getElementById('forget').hidden = !signedIn;
    if (!signedIn) {
      view().hidden = true;
      clear(view());
      document.getElementById('key-input').focus();
      return;
    }
    const [where, query] = location.hash.replace(/^#\/?/, '').split('?');
    const parts = where.split('/').filter(Boolean).map(decodeURIComponent);
    const params = new URLSearchParams(query || '');
    for (const link of document.querySelectorAll('#nav a')) {
      if (link.dataset.view === parts[0]) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    try {
      if (parts[0] === 'triggers') await triggersView(mine);
      else if (parts[0] === 'deliveries' && parts[1]) await deliveryView(mine, parts[1]);
      else if (parts[0] === 'deliveries') await deliveriesView(mine, params);
      else if (parts[0] === 'executions' && parts[1]) await executionView(mine, parts[1]);
      else if (parts[0] === 'executions') await executionsView(mine, params);
      else location.replace('#/deliveries');
    } catch (error) {
      if (mine !== generation) return;
      if (error instanceof ApiError) {
        show(mine, heading('Not shown'), el('p', { class: 'error' }, error.message));
      }
      sayError(error);
    }
  }

  function forgetKey(message) {
    sessionStorage.removeItem(KEY_SLOT);
    triggerList = null;
    route();
    if (message) say(message, 'error');
  }

  document.addEventListener('DOMContentLoaded', () => {
    document.getElementById('login-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const input = document.getElementById('key-input');
      const typed = input.value.trim();
      if (!typed) {
        say('Enter an API key.', 'error');
        return;
      }
      sessionStorage.setItem(KEY_SLOT, typed);
      input.value = '';
      triggerList = null;
      if (!location.hash || location.hash === '#') location.hash = '#/deliveries';
      else route();
    });
    document.getElementById('forget').addEventListener('click', () => forgetKey('The key is forgotten.'));
    window.addEventListener('hashchange', route);
    route();
  });
})();
