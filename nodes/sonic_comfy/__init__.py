"""Sonic inside ComfyUI: the node classes (`nodes`), where the model files are (`files`), the models held through
ComfyUI's memory management (`models`), face detection (`faces`), and the prepare/render steps (`steps`).

The only code of the Sonic family that touches ComfyUI; the model itself is `nodes.sonic`, plain torch.
"""
