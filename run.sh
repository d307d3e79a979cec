#!/usr/bin/env bash
# The course's sample commands, run from the repository root on a course-shaped data folder:
#   bash run.sh                    # the course's five files in datasets/
#   bash run.sh data/real_sample   # the 2,400 real drawings qd carries (built on first use)
set -e
DATA="${1:-datasets}"
if ! python -c 'import numpy, torch' 2>/dev/null; then
    echo "run.sh: \`python\` cannot import numpy and torch; run \`make venv && source .venv/bin/activate\` first" >&2
    exit 2
fi
if [ "$DATA" = datasets ] && [ ! -e datasets/fruit_images.npy ]; then
    echo "run.sh: datasets/ holds no course data (fruit_images.npy); \`bash run.sh data/real_sample\` runs on the 2,400 real drawings qd carries" >&2
    exit 2
fi

# Training
python main_densenet.py --mode "train" --dataDir "$DATA" --logDir "log_files" --modelSaveDir "model_files" --LR 0.0001 --bs 100 --epochs 2000
python main_convnet.py --mode "train" --dataDir "$DATA" --logDir "log_files" --modelSaveDir "model_files" --LR 0.01 --bs 100 --epochs 2000
python main_bestmodel.py --mode "train" --dataDir "$DATA" --logDir "log_files" --modelSaveDir "model_files" --LR 0.01 --bs 100 --epochs 2000

# For inference
python main_densenet.py --mode "predict" --dataDir "$DATA" --weights "model_files/densenet.pt" --predictionsFile "densenet_predictions.csv"
python main_convnet.py --mode "predict" --dataDir "$DATA" --weights "model_files/convnet.pt" --predictionsFile "convnet_predictions.csv"
python main_bestmodel.py --mode "predict" --dataDir "$DATA" --weights "model_files/bestmodel.pt" --predictionsFile "best_model_predictions.csv"
