// adaptlab ui: the only script. Checks upload sizes before sending and keeps a job page live by
// polling /api/jobs/<id>. Everything it shows is set with textContent (never parsed as HTML).
(function () {
  'use strict';

  function mib(n) { return (n / 1048576).toFixed(1) + ' MiB'; }

  // ---- uploads: refuse a too-large file before sending it (the server refuses it too)
  document.querySelectorAll('form[data-max-bytes]').forEach(function (form) {
    form.addEventListener('submit', function (ev) {
      var max = Number(form.dataset.maxBytes);
      var total = 0;
      form.querySelectorAll('input[type=file]').forEach(function (input) {
        for (var i = 0; i < input.files.length; i++) { total += input.files[i].size; }
      });
      var box = form.querySelector('.client-error');
      if (total > max) {
        ev.preventDefault();
        if (box) {
          box.textContent = 'The selected file(s) are ' + mib(total) + ', larger than this app\'s limit of ' +
            mib(max) + '. Split the file, keep only the columns the study needs (text and label), or restart ' +
            'the app with a larger limit (adaptlab ui --max-upload-mb N).';
          box.hidden = false;
        }
      } else if (box) {
        box.hidden = true;
        form.querySelectorAll('button[type=submit]').forEach(function (b) { b.dataset.busy = '1'; });
      }
    });
  });

  // ---- the planner: its request blocks while it calibrates on this machine, so say so and count the seconds
  var studyForm = document.getElementById('study-form');
  if (studyForm) {
    studyForm.addEventListener('submit', function (ev) {
      var button = ev.submitter;
      var busy = document.getElementById('plan-busy');
      if (!button || button.id !== 'plan-button' || !busy) { return; }
      busy.hidden = false;
      var t0 = Date.now();
      var elapsed = document.getElementById('plan-busy-elapsed');
      setInterval(function () {
        if (elapsed) { elapsed.textContent = Math.round((Date.now() - t0) / 1000) + ' s'; }
      }, 1000);
      // Disabled after the submission has started: a disabled submitter would not submit its formaction.
      setTimeout(function () {
        studyForm.querySelectorAll('button[type=submit]').forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  }

  // ---- the data check: near-duplicates, a baseline and the label check take seconds on thousands of rows
  var columnsForm = document.getElementById('columns-form');
  if (columnsForm) {
    columnsForm.addEventListener('submit', function () {
      var busy = document.getElementById('check-busy');
      if (busy) { busy.hidden = false; }
      setTimeout(function () {
        columnsForm.querySelectorAll('button[type=submit]').forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  }

  // ---- label review: picking a label for a row means "fix" it
  document.querySelectorAll('select.fix-label').forEach(function (sel) {
    sel.addEventListener('change', function () {
      var radio = document.getElementById('fix-' + sel.dataset.row);
      if (radio) { radio.checked = true; }
    });
  });

  // ---- job pages
  var jobEl = document.getElementById('job');
  if (!jobEl) { return; }
  var jobId = jobEl.dataset.jobId;
  var finished = ['done', 'failed', 'cancelled', 'interrupted'];
  var initial = jobEl.dataset.status;

  // A decision-driven study screens network rungs at a share of their training budget: "@25%".
  function fidelityText(c) {
    return (c.fidelity != null && c.fidelity < 1) ? ' @' + Math.round(c.fidelity * 100) + '%' : '';
  }

  function cellText(c) {
    var at = fidelityText(c);
    if (c.state === 'done') { return (c.f1 != null ? c.f1.toFixed(4) + at : 'done'); }
    if (c.state === 'stored') { return (c.f1 != null ? c.f1.toFixed(4) + at : 'stored') + ' (stored)'; }
    if (c.state === 'running') { return 'running…' + at; }
    if (c.state === 'skipped') { return 'not run (' + (c.why || 'not needed') + ')'; }
    return 'pending';
  }

  function svgEl(name, attrs) {
    var el = document.createElementNS('http://www.w3.org/2000/svg', name);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    return el;
  }

  var COLORS = ['#1f5fa8', '#c76b00', '#1b8a3a', '#b3261e'];

  function drawCurve(curve) {
    var W = 340, H = 150, L = 44, B = 22, T = 8, R = 8;
    var xs = [], ys = [];
    curve.series.forEach(function (s) { xs = xs.concat(s.x); ys = ys.concat(s.y); });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (x1 === x0) { x1 = x0 + 1; }
    if (y1 === y0) { y1 = y0 + 1; }
    var svg = svgEl('svg', {width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, role: 'img'});
    svg.appendChild(svgEl('rect', {x: L, y: T, width: W - L - R, height: H - T - B, fill: '#fff', stroke: '#dde1e6'}));
    function px(x) { return L + (x - x0) / (x1 - x0) * (W - L - R); }
    function py(y) { return T + (1 - (y - y0) / (y1 - y0)) * (H - T - B); }
    curve.series.forEach(function (s, i) {
      var pts = s.x.map(function (x, k) { return px(x).toFixed(1) + ',' + py(s.y[k]).toFixed(1); }).join(' ');
      svg.appendChild(svgEl('polyline', {points: pts, fill: 'none', stroke: COLORS[i % COLORS.length], 'stroke-width': 1.5}));
      var label = svgEl('text', {x: W - R - 4, y: T + 12 + 12 * i, 'text-anchor': 'end', 'font-size': 10, fill: COLORS[i % COLORS.length]});
      label.textContent = s.name;
      svg.appendChild(label);
    });
    [[y1, T + 10], [y0, H - B]].forEach(function (p) {
      var t = svgEl('text', {x: L - 4, y: p[1], 'text-anchor': 'end', 'font-size': 10, fill: '#5b636e'});
      t.textContent = p[0].toPrecision(3);
      svg.appendChild(t);
    });
    var xl = svgEl('text', {x: L, y: H - 6, 'font-size': 10, fill: '#5b636e'});
    xl.textContent = 'step ' + x0 + ' … ' + x1;
    svg.appendChild(xl);
    var fig = document.createElement('figure');
    var cap = document.createElement('figcaption');
    cap.textContent = curve.rung + ' seed ' + curve.seed + (curve.note ? ' (' + curve.note + ')' : '');
    fig.appendChild(cap);
    fig.appendChild(svg);
    return fig;
  }

  function update(job) {
    jobEl.dataset.status = job.status;
    var status = document.getElementById('job-status');
    status.textContent = job.status;
    status.className = 'badge ' + job.status;
    document.getElementById('job-phase').textContent = job.phase;
    var prog = document.getElementById('job-progress');
    if (prog) {
      var skipped = job.n_skipped || 0;
      prog.max = Math.max(job.n_cells - skipped, 1);
      prog.value = job.n_done;
      document.getElementById('job-count').textContent = job.n_done + ' of ' + (job.n_cells - skipped) +
        ' runs finished' + (skipped ? '; ' + skipped + ' not needed' : '');
    }
    var eta = document.getElementById('job-eta');
    if (eta) {
      eta.textContent = job.eta ? job.eta.text : '';
      eta.hidden = !job.eta;
    }
    Object.keys(job.cells).forEach(function (key) {
      var c = job.cells[key];
      var td = document.getElementById('cell-' + c.rung + '-' + c.seed);
      if (td) {
        td.className = 'cell state-' + c.state;
        td.textContent = cellText(c);
        td.dataset.state = c.state;
        td.dataset.fidelity = c.fidelity != null ? c.fidelity : 1;
      }
    });
    if (job.elapsed != null) {
      document.getElementById('job-elapsed').textContent = job.elapsed.toFixed(0) + ' s';
    }
    var log = document.getElementById('job-log');
    var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = job.log.join('\n');
    if (atBottom) { log.scrollTop = log.scrollHeight; }
    var cancel = document.getElementById('cancel-form');
    if (cancel) { cancel.hidden = !job.cancellable; }
    var curves = document.getElementById('curves');
    if (curves && job.curves && job.curves.length) {
      var key = JSON.stringify(job.curves.map(function (c) { return [c.rung, c.seed, c.series.length]; }));
      if (curves.dataset.key !== key) {
        curves.dataset.key = key;
        curves.textContent = '';
        job.curves.forEach(function (c) { curves.appendChild(drawCurve(c)); });
        document.getElementById('curves-section').hidden = false;
      }
    }
  }

  function poll() {
    fetch('/api/jobs/' + jobId, {headers: {Accept: 'application/json'}, cache: 'no-store'})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (job) {
        if (!job) { setTimeout(poll, 2000); return; }
        update(job);
        if (finished.indexOf(job.status) >= 0) {
          // The final blocks (results link, gate verdict, errors) are rendered by the server.
          if (finished.indexOf(initial) < 0 || job.status !== initial) { window.location.reload(); }
          return;
        }
        setTimeout(poll, 700);
      })
      .catch(function () { setTimeout(poll, 2000); });
  }

  if (finished.indexOf(initial) < 0) { poll(); } else {
    fetch('/api/jobs/' + jobId, {headers: {Accept: 'application/json'}}).then(function (r) { return r.json(); })
      .then(update).catch(function () {});
  }
})();
