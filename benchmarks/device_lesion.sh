#!/usr/bin/env bash
# The lesion finder's GPU recipe as one bounded run on a GPU host, sized to a short lease.
#
#   benchmarks/device_lesion.sh prepare     # here: the wheels a bare GPU image lacks, in .whl/
#   benchmarks/device_lesion.sh run         # on the GPU host, with OUT set: data, train, calibrate
#
# Why this shape: a borrowed GPU may come for minutes, not hours (this project's were lent for
# about 15 minutes in all, 10 a command), on a bare machine whose Python holds torch, numpy,
# scipy, scikit-learn, scikit-image and safetensors but not pydicom. So one run writes the
# seed-808 draw with every core, trains for a fixed time (--max-minutes; the state is kept,
# so RESUME=1 in a later run continues the same run exactly), calibrates on validation
# views and leaves the model under $OUT; the rest of the recipe (the pair, order and
# placement refits, the test evaluation) runs on any CPU from the returned weights
# (docs/model.md, "Recipe"). Nothing is evaluated on the GPU host.
#
# Settings (environment): MINUTES (training budget, 5), STEPS (20000), WIDTH (32),
# STUDIES (1200), DEVICE (cuda), WORKERS (16), VERSION (1.0.0-gpu), DATA (/tmp/lesion-808),
# EXTRA (more train_lesion_model options, e.g. "--ce-weight 1"), RESUME (1 = continue the
# run of an earlier one: put its returned model/ folder at .device/model, which `prepare`
# makes git ignore, and bring it along with .whl/). The draw, the crops and the calibration
# come on top of MINUTES: the draw costs about 0.75 s per study per core on this project's
# CPU (about a minute for 1200 studies on 16 such cores); on a GPU host none was timed.
set -euo pipefail

prepare() {
    mkdir -p .whl
    for ignored in /.whl/ /.device/; do
        grep -qx "$ignored" .git/info/exclude 2>/dev/null || echo "$ignored" >>.git/info/exclude
    done
    # pydicom is pure Python: the wheel installed here serves the device's Python 3.12 too.
    local version
    version=$(.venv/bin/python -c 'import pydicom; print(pydicom.__version__)')
    .venv/bin/python -m pip download -q --no-deps -d .whl "pydicom==$version"
    ls .whl
}

run() {
    : "${OUT:?set OUT to the folder whose files come back}"
    local py=${PY:-python3}
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    export PYTHONUNBUFFERED=1
    mkdir -p "$OUT/model"
    local args=(
        --data "${DATA:-/tmp/lesion-808}" --studies "${STUDIES:-1200}" --synth-seed 808
        --device "${DEVICE:-cuda}" --width "${WIDTH:-32}" --steps "${STEPS:-20000}"
        --max-minutes "${MINUTES:-5}" --workers "${WORKERS:-16}" --threads "${WORKERS:-16}"
        --version "${VERSION:-1.0.0-gpu}" --out "$OUT/model/sgc-lesion-mammo" --no-evaluate
    )
    if [ "${RESUME:-0}" = 1 ]; then
        # $OUT starts empty: the earlier call's model folder comes in carried (.device/model).
        cp -r "${RESUME_FROM:-.device/model}/." "$OUT/model/"
        args+=(--resume)
    fi
    # shellcheck disable=SC2086  # EXTRA is a list of options
    "$py" -m benchmarks.train_lesion_model "${args[@]}" ${EXTRA:-} 2>&1 | tee "$OUT/train.log"
}

case "${1:-}" in
prepare) prepare ;;
run) run ;;
*)
    echo "usage: $0 prepare|run   (see the comment at the top)" >&2
    exit 2
    ;;
esac
