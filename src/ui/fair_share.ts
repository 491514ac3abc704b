/**
 * Who gives way when the dashboard's total cap of logins or streams is reached: the principal
 * holding the most, so that one principal can never take another's last place. On a tie the
 * principal asking for one more gives way; among the others, the one holding the oldest.
 */

/**
 * The principal that gives way, given the holder of each place oldest first (the asking
 * principal's new place included) and the asking principal.
 */
export function whoGivesWay(holders: Iterable<string>, asking: string): string {
  const counts = new Map<string, number>();
  for (const holder of holders) counts.set(holder, (counts.get(holder) ?? 0) + 1);
  let most = asking;
  // Map order is the order of each principal's oldest place: the first of equals keeps it.
  for (const [holder, count] of counts) {
    if (count > (counts.get(most) ?? 0)) most = holder;
  }
  return most;
}

/** How many places `principal` holds. */
export function heldBy(holders: Iterable<string>, principal: string): number {
  let count = 0;
  for (const holder of holders) if (holder === principal) count++;
  return count;
}
