#!/usr/bin/env bash
# The demo: count words in a generated corpus with three local workers, then check the merged
# result against a plain serial run. Everything lands in demo-out/ (make clean removes it).
set -euo pipefail
cd "$(dirname "$0")/.."
piecework=./bin/piecework
out=demo-out
rm -rf "$out" && mkdir -p "$out"

echo "== generating a corpus (200 000 lines of text)" >&2
node -e '
  const words = "the of and a to in is was he for it with as his on be at by had are but from or have an they which one you were all her she there would their we him been has when who will no more if out so said what up its about than into them can only other new some could time these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long here get both between life being under never day same another know while last might us great old year off come since against go came right used take three".split(" ");
  let seed = 42; const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const lines = [];
  for (let i = 0; i < 200000; i++) {
    const n = 6 + Math.floor(rand() * 10);
    const line = [];
    for (let j = 0; j < n; j++) line.push(words[Math.floor(Math.pow(rand(), 2.5) * words.length)]);
    lines.push(line.join(" "));
  }
  process.stdout.write(lines.join("\n") + "\n");
' > "$out/corpus.txt"
ls -l "$out/corpus.txt" >&2

echo "== split into chunks of 5 000 lines" >&2
job=$($piecework split "$out/corpus.txt" --into "$out/job" --lines 5000)

echo "== three workers with two lanes each, like three hosts sharing the folder" >&2
count_words=(sh -c 'tr -s " " "\n" | sort | uniq -c')
pids=()
for i in 1 2 3; do
  $piecework work "$job" -j 2 --quiet -- "${count_words[@]}" & pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done

echo "== verify" >&2
$piecework verify "$job"

echo "== merge, then sum the per-chunk counts" >&2
$piecework merge "$job" | awk '{ n[$2] += $1 } END { for (w in n) print n[w], w }' | sort -k1,1nr -k2 > "$out/counts.txt"
tr -s ' ' '\n' < "$out/corpus.txt" | sort | uniq -c | awk '{ print $1, $2 }' | sort -k1,1nr -k2 > "$out/serial.txt"

echo "== top 10 words" >&2
head -10 "$out/counts.txt"
echo "== per-host log lines (first 3)" >&2
head -q -n 3 "$job"/logs/*.log | head -3 >&2

echo "== warm workers: a script with ~0.3 s of start-up, 20 chunks, 2 lanes, without and with --warm" >&2
cat > "$out/slow_start.py" <<'PY'
import os, sys, time
time.sleep(0.3)  # stands in for imports and a model load
sys.path.insert(0, os.environ["PW_TEMPLATES"])
from piecework_warm import serve
def process(in_path, out_path):
    with open(in_path) as src, open(out_path, "w") as dst:
        dst.write("%d\n" % sum(len(line.split()) for line in src))
serve(process)
PY
head -20000 "$out/corpus.txt" > "$out/warm-input.txt"
export PW_TEMPLATES="$PWD/templates"
ms() { echo $(( $(date +%s%N) / 1000000 )); }
for mode in per-chunk warm; do
  wjob=$($piecework split "$out/warm-input.txt" --into "$out/job-$mode" --lines 1000 --quiet)
  start=$(ms)
  if [ "$mode" = warm ]; then
    $piecework work "$wjob" -j 2 --quiet --warm -- python3 "$out/slow_start.py"
  else
    $piecework work "$wjob" -j 2 --quiet -- python3 "$out/slow_start.py" '{in}' '{out}'
  fi
  echo "   $mode: $(( $(ms) - start )) ms" >&2
done
cmp -s <($piecework merge "$out/job-per-chunk") <($piecework merge "$out/job-warm") || { echo "demo: --warm gave a different result" >&2; exit 1; }
echo "   same merged output both ways" >&2

if cmp -s "$out/counts.txt" "$out/serial.txt"; then
  echo "demo: OK — the merged result equals a serial run ($(wc -l < "$out/counts.txt") distinct words, $(ls "$job/out" | wc -l) chunks)" >&2
else
  echo "demo: MISMATCH between merged and serial results" >&2
  exit 1
fi
