# Janus-Pro-7B full-parameter RecA, sharded with FSDP (8 GPUs):
#   bash tools/dist_train.sh configs/reca/janus_pro_7b_fsdp.py 8
# Parameters, gradients and AdamW states are sharded over the GPUs, one FSDP
# unit per transformer block; the frozen parts (SigLIP, the VQ-VAE, lm_head,
# bfloat16) are not sharded. lm_head is frozen here: RecA alone never uses
# it. Checkpoints hold full state dicts (rank 0 writes them).
# One 80 GB GPU instead: parameters, gradients and optimizer states on the
# host (about 100 GiB of RAM), a block at a time on the GPU:
#   torchrun --nproc_per_node 1 tools/train.py CONFIG --launcher pytorch
#       --cfg-options strategy.model_wrapper.cpu_offload=True
# Check a setting first: tools/analysis_tools/estimate.py CONFIG --num-gpus N
# (docs/performance.md).
_base_ = ['./janus_pro_7b.py']

model = dict(umm=dict(frozen=['vision_model', 'vqmodel', 'lm_head']))
runner_type = 'reca_toolkit.RecAFlexibleRunner'
strategy = dict(
    type='reca_toolkit.RecAFSDPStrategy',
    state_dict_cfg='full',
    model_wrapper=dict(
        type='MMFullyShardedDataParallel',
        use_orig_params=True,
        auto_wrap_policy='reca_toolkit.transformer_layer_wrap_policy',
        ignored_modules=['umm.und_encoder.vision_model',
                         'umm.gen_tokenizer.vqmodel', 'umm.lm_head']))
# Sample grids and the export read the model outside FSDP; export from a
# checkpoint with tools/model_converters/export_hf.py instead.
custom_hooks = [dict(type='SkippedImagesHook')]
