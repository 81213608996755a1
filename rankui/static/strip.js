// Drag-to-reorder for the ranking strip: the new order goes back to Python as the component's value.
let dragged = null;
element.addEventListener('dragstart', (event) => {
  const item = event.target.closest('.rank-item');
  if (!item) return;
  dragged = item.dataset.id;
  event.dataTransfer.effectAllowed = 'move';
  event.dataTransfer.setData('text/plain', dragged);
});
element.addEventListener('dragover', (event) => {
  event.preventDefault();
  const item = event.target.closest('.rank-item');
  element.querySelectorAll('.drop-target').forEach((el) => el.classList.remove('drop-target'));
  if (item) item.classList.add('drop-target');
});
element.addEventListener('drop', (event) => {
  event.preventDefault();
  element.querySelectorAll('.drop-target').forEach((el) => el.classList.remove('drop-target'));
  const target = event.target.closest('.rank-item');
  const id = dragged || event.dataTransfer.getData('text/plain');
  dragged = null;
  if (!target || !id || target.dataset.id === id) return;
  const list = [...props.value];
  const from = list.findIndex((v) => v.id === id);
  const to = list.findIndex((v) => v.id === target.dataset.id);
  if (from < 0 || to < 0) return;
  const [item] = list.splice(from, 1);
  list.splice(to, 0, item);
  props.value = list;
  trigger('change');
});
