() => {
  // One-key judgements, as in annotation tools: 1 left, 2 right, 0 tie, s skip, u undo.
  // Ignored while a text box has focus, so typing an instruction never labels anything.
  const buttons = {'1': 'btn-left', '2': 'btn-right', '0': 'btn-tie', 's': 'btn-skip', 'u': 'btn-undo'};
  document.addEventListener('keydown', (event) => {
    const tag = document.activeElement ? document.activeElement.tagName : '';
    if (['INPUT', 'TEXTAREA', 'SELECT'].includes(tag) || document.activeElement?.isContentEditable) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const id = buttons[event.key.toLowerCase()];
    if (!id) return;
    const button = document.querySelector('#' + id + ' button, button#' + id);
    if (button) { event.preventDefault(); button.click(); }
  });
}
