// Keyboard shortcuts for the review queue. They only follow links and press buttons the server
// rendered, so the page works the same without this script (and the CSP allows no other script).
'use strict';
(function () {
  var typing = function (el) {
    return el && (el.tagName === 'INPUT' && el.type !== 'radio' || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT' || el.isContentEditable);
  };
  var byId = function (id) { return document.getElementById(id); };
  var go = function (id) {
    var link = byId(id);
    if (link) window.location.assign(link.href);
  };
  var press = function (id) {
    var button = byId(id);
    if (button && !button.disabled) button.click();
  };

  document.addEventListener('keydown', function (event) {
    // A held key repeats; one press is one action (a repeated u would undo two decisions).
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    if (typing(document.activeElement)) {
      if (event.key === 'Escape') document.activeElement.blur();
      // Typing the true label and pressing Enter means "reject with this label".
      if (event.key === 'Enter' && document.activeElement.id === 'correct-label') {
        event.preventDefault();
        press('reject');
      }
      return;
    }
    var key = event.key;
    if (key === 'j' || key === 'ArrowDown') go('next-item');
    else if (key === 'k' || key === 'ArrowUp') go('prev-item');
    else if (key === 'c') press('confirm');
    else if (key === 'r') press('reject');
    else if (key === 't') { var correct = byId('correct-label'); if (correct) correct.focus(); }
    else if (key === 'e') press('escalate');
    else if (key === 'u') press('undo');
    else if (key === 'o') { var listing = byId('listing-link'); if (listing) window.open(listing.href, '_blank', 'noopener,noreferrer'); }
    else if (key === '/') { var filter = byId('filter-label'); if (filter) filter.focus(); }
    else if (key === '?') { var keys = byId('keys'); if (keys) keys.classList.toggle('open'); }
    else if (/^[1-9]$/.test(key)) {
      var choice = document.querySelector('input[name="label"][data-key="' + key + '"]');
      if (choice) choice.checked = true;
    } else return;
    event.preventDefault();
  });

  // One post per form: a double press must not post twice (the server refuses the second anyway).
  ['decide-form', 'undo-form', 'reopen-form'].forEach(function (id) {
    var form = byId(id);
    if (form) form.addEventListener('submit', function () {
      setTimeout(function () {
        Array.prototype.forEach.call(form.querySelectorAll('button'), function (b) { b.disabled = true; });
      }, 0);
    });
  });

  var selected = document.querySelector('.card.selected');
  if (selected && selected.scrollIntoView) selected.scrollIntoView({ block: 'nearest' });
})();
