// aijob-web: the live parts only. Every page works without this file.
(function () {
  'use strict';

  // Replaces the elements with these ids by their fresh copies from the server.
  function refresh(ids) {
    return fetch(location.href, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, 'text/html');
        ids.forEach(function (id) {
          var cur = document.getElementById(id), next = doc.getElementById(id);
          if (cur && next) cur.replaceWith(document.importNode(next, true));
        });
        wire();
      })
      .catch(function () {});
  }

  // Elements marked data-refresh="ms" are reloaded on that period while the tab is shown.
  var timers = {};
  function wire() {
    document.querySelectorAll('[data-refresh]').forEach(function (el) {
      if (!el.id || timers[el.id]) return;
      var ms = Math.max(1000, parseInt(el.getAttribute('data-refresh'), 10) || 5000);
      timers[el.id] = setTimeout(function () {
        delete timers[el.id];
        if (document.hidden || anySelected()) { wire(); return; }
        refresh([el.id]);
      }, ms);
    });
  }

  function anySelected() {
    return !!document.querySelector('input[type=checkbox][name=id]:checked');
  }

  // Select-all checkboxes and confirmations, by delegation (tables are replaced live).
  document.addEventListener('change', function (e) {
    var t = e.target;
    if (t && t.hasAttribute && t.hasAttribute('data-select-all')) {
      var form = t.closest('form');
      form.querySelectorAll('input[type=checkbox][name="' + t.getAttribute('data-select-all') + '"]')
        .forEach(function (c) { c.checked = t.checked; });
    }
  });
  document.addEventListener('click', function (e) {
    var b = e.target && e.target.closest ? e.target.closest('[data-confirm]') : null;
    if (b && !window.confirm(b.getAttribute('data-confirm'))) e.preventDefault();
  });

  function setBadge(text, cls) {
    var b = document.getElementById('live-badge');
    if (b) { b.textContent = text; b.className = 'pill ' + cls; }
  }

  // A queue's events, fanned out by the server from the queue's events stream.
  function follow() {
    var root = document.querySelector('[data-live-queue]');
    if (!root || !window.EventSource) return;
    var q = root.getAttribute('data-live-queue');
    var job = root.getAttribute('data-live-job');
    var es = new EventSource('/live/' + encodeURIComponent(q));
    var pending = null;
    function later(ids) {
      if (pending) return;
      pending = setTimeout(function () { pending = null; refresh(ids); }, 400);
    }
    var parts = job ? ['job-main'] : ['queue-stats', 'jobs'];
    // once subscribed, one redraw catches up with whatever happened since the page was
    // made (and after a reconnect, with whatever the gap lost)
    es.onopen = function () { setBadge('live', 'good'); later(parts); };
    es.onerror = function () { setBadge('reconnecting', 'warn'); };
    es.addEventListener('job', function (msg) {
      var ev;
      try { ev = JSON.parse(msg.data); } catch (_) { return; }
      if (job) {
        if (ev.id !== job) return;
        var bar = document.getElementById('job-progress');
        if (bar && typeof ev.percent === 'number') {
          bar.value = ev.percent;
          document.getElementById('job-percent').textContent = ev.percent + '%';
        }
        if (typeof ev.progress === 'string') {
          document.getElementById('job-progress-text').textContent = ev.progress;
        }
        // the server's page is the truth: a refresh started before this event may have
        // brought older numbers, so every event ends with one more (debounced) refresh
        later(parts);
      } else {
        if (anySelected()) return;
        later(parts);
      }
    });
  }

  wire();
  if (document.querySelector('[data-refresh]') && !document.querySelector('[data-live-queue]')) {
    setBadge('auto-refresh', 'good');
  }
  follow();
})();
