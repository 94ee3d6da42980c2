"""The network and what is measured or fitted on it: CIFReNet, checkpoints, complexity,
the paper's figures, training and the linear-probe model. Needs PyTorch."""
