// The trivial task: returns at once.
export default function () {
  return null;
}
