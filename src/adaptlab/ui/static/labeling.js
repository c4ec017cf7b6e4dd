// adaptlab ui: the labeling page. Number keys label the current text, s skips, u or Backspace undoes.
// Every key press is POSTed at once and the page shows what the server saved (a reload shows the same).
// Text is set with textContent only (never parsed as HTML).
(function () {
  'use strict';
  // While texts are being picked (a background job) the page reloads itself until the batch is there.
  if (document.getElementById('picking')) {
    window.setTimeout(function () { window.location.reload(); }, 1000);
  }
  var box = document.getElementById('labeling');
  if (!box) { return; }
  var model = box.dataset.model;
  var classes = JSON.parse(box.dataset.classes);
  var locked = box.dataset.locked === 'yes';
  var statusEl = document.getElementById('label-status');
  var rows = Array.prototype.slice.call(document.querySelectorAll('#to-label tr[data-row]'));
  var state = null;
  var chosen = null; // a row clicked by the user; otherwise the next undecided row
  var busy = false;

  function current() {
    if (chosen !== null) { return chosen; }
    return state ? state.next : null;
  }

  function show(s) {
    state = s;
    document.getElementById('n-labeled').textContent = String(s.labeled);
    document.getElementById('n-skipped').textContent = String(s.skipped);
    rows.forEach(function (tr) {
      var k = tr.dataset.row;
      var cell = document.getElementById('label-' + k);
      var has = Object.prototype.hasOwnProperty.call(s.decisions, k);
      cell.textContent = has ? (s.decisions[k] === null ? 'skipped' : s.decisions[k]) : '';
      tr.classList.toggle('decided', has);
      tr.classList.toggle('current', String(current()) === k);
    });
    var cur = current();
    if (cur !== null && rows[cur]) { rows[cur].scrollIntoView({block: 'nearest'}); }
    box.dataset.saved = String(s.labeled + s.skipped);
  }

  function problem(msg) {
    statusEl.textContent = msg;
    statusEl.hidden = false;
  }

  function send(body) {
    if (busy || locked) { return; }
    busy = true;
    fetch('/api/models/' + encodeURIComponent(model) + '/label', {
      method: 'POST', headers: {'Content-Type': 'application/json', 'Accept': 'application/json'},
      body: JSON.stringify(body), credentials: 'same-origin'
    }).then(function (r) {
      return r.json().then(function (j) { return {ok: r.ok, body: j}; });
    }).then(function (res) {
      busy = false;
      if (!res.ok) { problem(res.body.detail || 'not saved'); return; }
      statusEl.hidden = true;
      chosen = null;
      show(res.body);
    }).catch(function () {
      busy = false;
      problem('Not saved: the server did not answer. Your earlier labels are safe; press the key again.');
    });
  }

  function label(name) {
    var row = current();
    if (row === null) { problem('Every text has a label or was skipped: retrain, or undo to change one.'); return; }
    send({action: 'label', row: row, label: name});
  }

  document.addEventListener('keydown', function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var t = ev.target;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA')) { return; }
    if (/^[1-9]$/.test(ev.key) && Number(ev.key) <= classes.length) {
      ev.preventDefault();
      label(classes[Number(ev.key) - 1]);
    } else if (ev.key === 's' || ev.key === '0') {
      ev.preventDefault();
      var row = current();
      if (row !== null) { send({action: 'skip', row: row}); }
    } else if (ev.key === 'u' || ev.key === 'Backspace') {
      ev.preventDefault();
      send({action: 'undo'});
    }
  });

  document.querySelectorAll('#label-buttons button').forEach(function (b) {
    b.addEventListener('click', function () {
      if (b.dataset.label !== undefined) { label(b.dataset.label); }
      else if (b.dataset.action === 'undo') { send({action: 'undo'}); }
      else if (current() !== null) { send({action: 'skip', row: current()}); }
    });
  });

  rows.forEach(function (tr) {
    tr.addEventListener('click', function () {
      chosen = Number(tr.dataset.row);
      show(state);
    });
  });

  fetch('/api/models/' + encodeURIComponent(model) + '/label', {headers: {'Accept': 'application/json'}})
    .then(function (r) { return r.json(); })
    .then(function (s) { show(s); box.dataset.ready = 'yes'; });
}());
