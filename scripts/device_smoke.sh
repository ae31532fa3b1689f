set -x
source .device/env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
nproc; free -g | head -2
cmake -S . -B build-gpu $(command -v ninja >/dev/null && echo -G Ninja) -DLEMO_ENABLE_CUDA=ON -DLEMO_PYTHON=python3 $LEMO_DEVICE_CMAKE_FLAGS -DCMAKE_BUILD_TYPE=Release 2>&1 | tail -20
time cmake --build build-gpu -j 16 2>&1 | tail -20
cd build-gpu && ctest 2>&1 | tail -5
python3 -c "import transformers, peft, torch; print(transformers.__version__, peft.__version__, torch.__version__)"
which ninja ccache
