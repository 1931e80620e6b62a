#!/usr/bin/env bash
# Walks the bad-input catalogue, docs/bad-inputs.md: each table row is an input lowp must
# refuse (or survive) with a given exit code and an exact message. The rows are run as written
# (lowp = the CLI under test, $D = a directory of fixtures made here) and each one's output
# must contain the row's message. So the doc and the behaviour cannot drift apart:
#   bash tests/e2e/bad_inputs.sh build/lowp .            check (the ctest test)
#   bash tests/e2e/bad_inputs.sh build/lowp . --update   rewrite the doc's exit and message
#                                                        columns from what lowp now says
set -uo pipefail
LOWP=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
SRC=$2
MODE=${3:-check}
DOC=$SRC/docs/bad-inputs.md
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
export OMP_NUM_THREADS=1
lowp() { "$LOWP" "$@"; }

# ---- fixtures
awk 'BEGIN { srand(5); for (i = 0; i < 500; i++) { l = ""; for (j = 0; j < 60; j++)
  l = l sprintf("%c", 97 + int(rand() * 26)); print l } }' >"$D/good.txt"
head -c 20000 "$D/good.txt" >"$D/good2.txt"
: >"$D/empty.txt"
printf 'x' >"$D/one.txt"
RANDOM=42 # the same "random" bytes every time, so the message is too
for ((i = 0; i < 3000; i++)); do printf -v h %02x $((RANDOM % 256)); printf "\\x$h"; done >"$D/binary.txt"
printf 'abc\0def\n' >"$D/nul.txt"
# shards: the header is 256 int32 (magic, version, count), then uint16 tokens
shard() { # shard FILE MAGIC VERSION COUNT NTOKENS [TOKEN]
  local f=$1
  {
    printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($2 & 255)) $(($2 >> 8 & 255)) \
      $(($2 >> 16 & 255)) $(($2 >> 24 & 255)))"
    printf "$(printf '\\x%02x\\x00\\x00\\x00' "$3")"
    printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($4 & 255)) $(($4 >> 8 & 255)) \
      $(($4 >> 16 & 255)) $(($4 >> 24 & 255)))"
    head -c $((253 * 4)) /dev/zero
    local t=${6:-1000}
    for ((i = 0; i < $5; i++)); do
      printf "$(printf '\\x%02x\\x%02x' $((t & 255)) $((t >> 8)))"
    done
  } >"$f"
}
shard "$D/train.bin" 20240520 1 600 600
shard "$D/val.bin" 20240520 1 200 200
shard "$D/badmagic.bin" 12345 1 600 600
shard "$D/badversion.bin" 20240520 7 600 600
shard "$D/truncated.bin" 20240520 1 600 300
shard "$D/oov.bin" 20240520 1 600 600 60000
head -c 100 "$D/train.bin" >"$D/header_cut.bin"
# recipes
printf 'base = fp8-delayed\nfoo = 1\n' >"$D/r_unknown_key.recipe"
printf 'fprop.x = fp9\n' >"$D/r_bad_scheme.recipe"
printf 'name = x\nbase = bf16\n' >"$D/r_base_late.recipe"
printf 'base = fp8-delayed\namax_history = -3\n' >"$D/r_bad_history.recipe"
printf 'this is not a recipe\n' >"$D/r_garbage.recipe"
# checkpoints: a micro run of 2 steps, then broken copies of it
MICRO="--model tiny --layers 1 --dim 16 --ctx 8 --batch 2 --eval-every 0 --eval-batches 1"
lowp train $MICRO --steps 4 --stop-after 2 --data "$D/good.txt" --out "$D/ck" >/dev/null 2>&1 || {
  echo "FAIL: cannot make the fixture checkpoint"; exit 1; }
mk() { rm -rf "$D/$1"; cp -r "$D/ck" "$D/$1"; rm -f "$D/$1/model.safetensors.prev"; }
mk ck_flip_model
printf '\x55' | dd of="$D/ck_flip_model/model.safetensors" bs=1 seek=3000 conv=notrunc 2>/dev/null
mk ck_flip_state
sz=$(stat -c %s "$D/ck_flip_state/trainer_state.safetensors")
printf '\x55' | dd of="$D/ck_flip_state/trainer_state.safetensors" bs=1 seek=$((sz - 50)) \
  conv=notrunc 2>/dev/null
mk ck_trunc_model
truncate -s 2000 "$D/ck_trunc_model/model.safetensors"
mk ck_trunc_state
truncate -s 500 "$D/ck_trunc_state/trainer_state.safetensors"
mk ck_no_state
rm "$D/ck_no_state/trainer_state.safetensors"
mk ck_bad_config
printf '{"model_type": "gpt2", "n_layer": 1,}' >"$D/ck_bad_config/config.json"
mk ck_huge_config
sed 's/"n_layer": 1/"n_layer": 1000000/' "$D/ck/config.json" >"$D/ck_huge_config/config.json"
mk ck_bert
printf '{"model_type": "bert"}' >"$D/ck_bert/config.json"
mk ck_header_huge # a header length of 2^62
printf '\x00\x00\x00\x00\x00\x00\x00\x40' | dd of="$D/ck_header_huge/model.safetensors" bs=1 \
  conv=notrunc 2>/dev/null
printf '\x00\x00\x00\x00\x00\x00\x00\x40' >"$D/huge_header.safetensors"
printf 'abc' >"$D/three_bytes.f32"

# ---- the catalogue: rows "| id | what | `command` | exit | `message` |"
status=0
n=0
tmpdoc=$D/doc.md
while IFS= read -r line; do
  if [[ $line =~ ^\|\ *([a-z0-9_-]+)\ *\|(.*)\|\ *\`(.*)\`\ *\|\ *([0-9]+)\ *\|\ *\`(.*)\`\ *\|$ ]]; then
    id=${BASH_REMATCH[1]} what=${BASH_REMATCH[2]} cmd=${BASH_REMATCH[3]}
    want_rc=${BASH_REMATCH[4]} want=${BASH_REMATCH[5]}
    cmd=${cmd//\\|/|}
    want=${want//\\|/|}
    out=$(cd "$D" && eval "$cmd" 2>&1)
    rc=$?
    n=$((n + 1))
    if [ "$MODE" = --update ]; then
      if [ $rc -ne 0 ]; then # the error line
        msg=$(echo "$out" | grep -m1 '^lowp [a-z]*: ' || echo "$out" | tail -1)
      else
        msg=$want
      fi
      msg=${msg//$D/\$D}
      msg=${msg//|/\\|}
      echo "| $id |$what| \`${BASH_REMATCH[3]}\` | $rc | \`$msg\` |" >>"$tmpdoc"
      continue
    fi
    want=${want//\$D/$D}
    if [ "$rc" != "$want_rc" ] || [[ $out != *"$want"* ]]; then
      echo "FAIL $id: exit $rc (want $want_rc); output:"
      echo "$out" | head -5
      echo "  wanted: $want"
      status=1
    fi
  elif [ "$MODE" = --update ]; then
    echo "$line" >>"$tmpdoc"
  fi
done <"$DOC"
if [ "$MODE" = --update ]; then
  cp "$tmpdoc" "$DOC"
  echo "updated $DOC ($n entries)"
  exit 0
fi
[ $n -ge 30 ] || { echo "FAIL: only $n catalogue rows parsed from $DOC"; exit 1; }
[ $status -eq 0 ] && echo "PASS: $n bad inputs behave as docs/bad-inputs.md says"
exit $status
